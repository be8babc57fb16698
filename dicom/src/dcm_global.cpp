/*
 * NAME
 *	dcm_global.cpp - process-wide DCMTK set-up (see usv/dicom.h)
 *
 * DESCRIPTION
 *	Dictionary check, codec registration, logging, lenient parsing and
 *	no reverse DNS lookups of peers, once, from main() before any
 *	thread. This is the only place in usview that sets DCMTK's
 *	process-wide flags (dcmIgnoreParsingErrors, dcmDisableGethostbyaddr):
 *	the decoder (dcm_image.cpp), the SCP (dcm_scp.cpp) and the result
 *	writers rely on them being set here. The other process-wide DCMTK
 *	values are the SCU's connect timeout (usv_scu_global_init, also
 *	once from main) and dcmExternalSocketHandle, which only the SCP's
 *	accept thread sets and resets around each hand-over.
 *
 *	OpenSSL (DICOM TLS of the SCP and the SCU) is initialised here too,
 *	through DCMTK, before any thread; the TLS layers themselves are then
 *	built without initialising it again.
 */
#include "usv/dicom.h"
#include "usv/err.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdict.h>
#include <dcmtk/dcmdata/dcobject.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/dcmnet/dul.h>
#include <dcmtk/dcmtls/tlslayer.h>
#include <dcmtk/oflog/oflog.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>

static std::atomic<int> g_inited{0};

extern "C" int usv_dcm_global_init(char *errbuf, size_t errlen)
{
	try {
		if (g_inited.exchange(1))
			return 0;
		/* DCMTK logs to stderr on its own. Every failure that matters is
		 * reported through our return codes and error buffers (and, in
		 * the daemon, through its log callback), and DCMTK also logs
		 * conditions we recover from (e.g. a frame decoded through a
		 * fallback path), so only fatal messages are let through. */
		OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
		/* Real-world files carry small encoding errors (odd lengths,
		 * stray items); read what can be read and let the pixel and
		 * attribute checks decide. */
		dcmIgnoreParsingErrors.set(OFTrue);
		/* Peers are identified by their address: a reverse DNS lookup on
		 * every association would stall on a slow resolver and gives
		 * nothing the access checks use. */
		dcmDisableGethostbyaddr.set(OFTrue);
		if (!dcmDataDict.isDictionaryLoaded()) {
			g_inited = 0;
			return usv_seterr(errbuf, errlen, -ENOENT,
			                  "DICOM data dictionary not loaded (check DCMDICTPATH)");
		}
		DcmRLEDecoderRegistration::registerCodecs();
		DJDecoderRegistration::registerCodecs();
		DJLSDecoderRegistration::registerCodecs();
		DcmTLSTransportLayer::initializeOpenSSL();
		return 0;
	} catch (...) {
		g_inited = 0;
		return usv_seterr(errbuf, errlen, -USV_ERR_DICOM, "DICOM set-up failed");
	}
}

extern "C" void usv_dcm_global_cleanup(void)
{
	try {
		if (!g_inited.exchange(0))
			return;
		DJLSDecoderRegistration::cleanup();
		DJDecoderRegistration::cleanup();
		DcmRLEDecoderRegistration::cleanup();
	} catch (...) {
	}
}

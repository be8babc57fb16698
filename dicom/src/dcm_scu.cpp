/*
 * NAME
 *	dcm_scu.cpp - C-STORE of one file with the real per-instance outcome
 *
 * DESCRIPTION
 *	DcmStorageSCU::sendSOPInstances() returns EC_Normal even when the peer
 *	answered with a failure status; the per-instance truth is only in
 *	notifySOPInstanceSent(). StoreSCU records it. One SCU object per call.
 *
 *	Presentation contexts: DcmStorageSCU proposes the file's own syntax
 *	and, for uncompressed or losslessly compressed files, the uncompressed
 *	ones (decompression mode "lossless only", dataset conversion on, so a
 *	peer that takes only uncompressed data still gets RLE/JPEG-LS/JPEG
 *	lossless objects). Lossy JPEG objects go as they are or not at all.
 *
 *	Classification of failures (see usv/dcm_scu.h) follows the table of
 *	observed DCMTK conditions in notes/dcmtk.md section 3.
 */
#include "usv/dcm_scu.h"
#include "usv/err.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dctk.h>
#include <dcmtk/dcmnet/diutil.h>
#include <dcmtk/dcmnet/dstorscu.h>
#include <dcmtk/dcmnet/dul.h>
#include <dcmtk/dcmnet/scu.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

namespace
{

class StoreSCU : public DcmStorageSCU
{
      public:
	bool notified = false;
	bool request_sent = false;
	Uint16 status = 0;

      protected:
	void notifySOPInstanceSent(const TransferEntry &e) override
	{
		notified = true;
		request_sent = e.RequestSent != OFFalse;
		status = e.ResponseStatusCode;
	}
};

bool valid_ae(const char *ae)
{
	size_t n;

	if (!ae)
		return false;
	n = strlen(ae);
	if (n == 0 || n > 16)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)ae[i] < 0x20 || (unsigned char)ae[i] > 0x7e || ae[i] == '\\')
			return false;
	/* all spaces is not a title */
	return strspn(ae, " ") != n;
}

void set_result(usv_scu_result *res, usv_scu_outcome o, uint32_t status, const std::string &why)
{
	res->outcome = o;
	res->status = status;
	snprintf(res->reason, sizeof res->reason, "%s", why.c_str());
	/* one line */
	for (char *p = res->reason; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
}

int finish(usv_scu_result *res, const char *what, char *errbuf, size_t errlen)
{
	switch (res->outcome) {
	case USV_SCU_SUCCESS:
	case USV_SCU_WARNING:
		return 0;
	case USV_SCU_RETRY:
		return usv_seterr(errbuf, errlen, -EAGAIN, "%s: %s", what, res->reason);
	default:
		return usv_seterr(errbuf, errlen, -USV_ERR_DICOM, "%s: %s", what, res->reason);
	}
}

std::string status_text(Uint16 st)
{
	char b[160];
	snprintf(b, sizeof b, "status 0x%04X (%s)", st, DU_cstoreStatusString(st));
	return b;
}

void configure(DcmSCU &scu, const usv_scu_peer *p)
{
	scu.setAETitle(p->calling_ae);
	scu.setPeerAETitle(p->called_ae);
	scu.setPeerHostName(p->host);
	scu.setPeerPort(p->port);
	scu.setACSETimeout(p->acse_timeout_s > 0 ? (Uint32)p->acse_timeout_s : 10);
	scu.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
	scu.setDIMSETimeout(p->dimse_timeout_s > 0 ? (Uint32)p->dimse_timeout_s : 60);
	Uint32 pdu = p->max_pdu ? p->max_pdu : 65536;
	if (pdu < 4096)
		pdu = 4096;
	if (pdu > 131072)
		pdu = 131072;
	scu.setMaxReceivePDULength(pdu);
}

int check_peer(const usv_scu_peer *p, usv_scu_result *res)
{
	if (!p || !valid_ae(p->called_ae) || !valid_ae(p->calling_ae) || !p->host || !*p->host ||
	    p->port == 0) {
		set_result(res, USV_SCU_PERMANENT, USV_SCU_NO_STATUS,
		           "invalid peer (AE titles, host or port)");
		return -EINVAL;
	}
	return 0;
}

/* Association set-up failure: rejected, refused, unreachable, timeout. */
std::string assoc_failure(const usv_scu_peer *p, const OFCondition &c)
{
	std::string where =
	    std::string(p->called_ae) + "@" + p->host + ":" + std::to_string(p->port);
	if (c == DUL_ASSOCIATIONREJECTED)
		return "association rejected by " + where;
	return "cannot connect to " + where + ": " + c.text();
}

double ms_since(std::chrono::steady_clock::time_point t0)
{
	return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
	    .count();
}

} // namespace

extern "C" int usv_scu_global_init(int connect_timeout_s)
{
	try {
		if (connect_timeout_s < 0 || connect_timeout_s > 600)
			return -EINVAL;
		dcmConnectionTimeout.set(connect_timeout_s ? connect_timeout_s : 10);
		/* One-time network initialisation (FSM tables, SIGPIPE) before threads. */
		T_ASC_Network *net = nullptr;
		if (ASC_initializeNetwork(NET_REQUESTOR, 0, 10, &net).good())
			ASC_dropNetwork(&net);
		return 0;
	} catch (...) {
		return -USV_ERR_DICOM;
	}
}

extern "C" const char *usv_scu_outcome_name(usv_scu_outcome o)
{
	switch (o) {
	case USV_SCU_SUCCESS:
		return "success";
	case USV_SCU_WARNING:
		return "warning";
	case USV_SCU_RETRY:
		return "retry";
	case USV_SCU_PERMANENT:
		return "permanent";
	}
	return "unknown";
}

extern "C" usv_scu_outcome usv_scu_classify_status(uint32_t st)
{
	if (st == 0x0000)
		return USV_SCU_SUCCESS;
	if (st == 0x0001 || (st & 0xF000) == 0xB000)
		return USV_SCU_WARNING;
	if ((st & 0xFF00) == 0xA700 || (st & 0xFF00) == 0xFE00)
		return USV_SCU_RETRY;
	/* 0xA9xx, 0xCxxx, 0x0122, 0x0124, 0x0211 and anything unknown */
	return USV_SCU_PERMANENT;
}

extern "C" int usv_scu_store(const usv_scu_peer *peer, const char *path, usv_scu_result *res,
                             char *errbuf, size_t errlen)
{
	usv_scu_result dummy;
	if (!res)
		res = &dummy;
	memset(res, 0, sizeof *res);
	auto t0 = std::chrono::steady_clock::now();
	const char *what = path ? path : "(null)";
	try {
		if (check_peer(peer, res) != 0 || !path || !*path) {
			if (!path || !*path)
				set_result(res, USV_SCU_PERMANENT, USV_SCU_NO_STATUS, "no file");
			usv_seterr(errbuf, errlen, -EINVAL, "%s: %s", what, res->reason);
			return -EINVAL;
		}
		StoreSCU scu;
		configure(scu, peer);
		scu.setDecompressionMode(DcmStorageSCU::DM_losslessOnly);
		scu.setDatasetConversionMode(OFTrue);
		scu.setHaltOnUnsuccessfulStoreMode(OFTrue);

		OFCondition c = scu.addDicomFile(path, ERM_fileOnly, OFTrue);
		if (c.bad()) {
			set_result(res, USV_SCU_PERMANENT, USV_SCU_NO_STATUS,
			           std::string("not a sendable DICOM file: ") + c.text());
			res->elapsed_ms = ms_since(t0);
			return finish(res, what, errbuf, errlen);
		}
		c = scu.addPresentationContexts();
		if (c.good())
			c = scu.initNetwork();
		if (c.bad()) {
			set_result(res, USV_SCU_RETRY, USV_SCU_NO_STATUS,
			           std::string("network set-up failed: ") + c.text());
			res->elapsed_ms = ms_since(t0);
			return finish(res, what, errbuf, errlen);
		}
		c = scu.negotiateAssociation();
		if (c == NET_EC_NoAcceptablePresentationContexts) {
			set_result(res, USV_SCU_PERMANENT, USV_SCU_NO_STATUS,
			           "peer accepted no presentation context for this SOP class / "
			           "transfer syntax");
			scu.releaseAssociation();
			res->elapsed_ms = ms_since(t0);
			return finish(res, what, errbuf, errlen);
		}
		if (c.bad()) {
			set_result(res, USV_SCU_RETRY, USV_SCU_NO_STATUS, assoc_failure(peer, c));
			res->elapsed_ms = ms_since(t0);
			return finish(res, what, errbuf, errlen);
		}
		c = scu.sendSOPInstances();
		if (scu.notified && scu.request_sent) {
			usv_scu_outcome o = usv_scu_classify_status(scu.status);
			set_result(res, o, scu.status, status_text(scu.status));
			if (c.bad() && o != USV_SCU_SUCCESS && o != USV_SCU_WARNING)
				set_result(res, o, scu.status,
				           status_text(scu.status) + ", " + c.text());
		} else if (c == NET_EC_NoAcceptablePresentationContexts ||
		           (scu.notified && !scu.request_sent && c.good())) {
			set_result(res, USV_SCU_PERMANENT, USV_SCU_NO_STATUS,
			           std::string("no accepted presentation context for the file") +
			               (c.bad() ? std::string(": ") + c.text() : ""));
		} else {
			set_result(res, USV_SCU_RETRY, USV_SCU_NO_STATUS,
			           std::string("transfer failed: ") +
			               (c.bad() ? c.text() : "no response"));
		}
		if (scu.isConnected()) {
			if (res->outcome == USV_SCU_RETRY && !scu.request_sent)
				scu.abortAssociation();
			else
				scu.releaseAssociation();
		}
		res->elapsed_ms = ms_since(t0);
		return finish(res, what, errbuf, errlen);
	} catch (const std::bad_alloc &) {
		set_result(res, USV_SCU_RETRY, USV_SCU_NO_STATUS, "out of memory");
		usv_seterr(errbuf, errlen, -ENOMEM, "%s: out of memory", what);
		return -EAGAIN;
	} catch (...) {
		set_result(res, USV_SCU_RETRY, USV_SCU_NO_STATUS, "unexpected failure");
		usv_seterr(errbuf, errlen, -EAGAIN, "%s: unexpected failure", what);
		return -EAGAIN;
	}
}

extern "C" int usv_scu_echo(const usv_scu_peer *peer, usv_scu_result *res, char *errbuf,
                            size_t errlen)
{
	usv_scu_result dummy;
	if (!res)
		res = &dummy;
	memset(res, 0, sizeof *res);
	auto t0 = std::chrono::steady_clock::now();
	try {
		if (check_peer(peer, res) != 0) {
			usv_seterr(errbuf, errlen, -EINVAL, "echo: %s", res->reason);
			return -EINVAL;
		}
		DcmSCU scu;
		configure(scu, peer);
		OFList<OFString> xfers;
		xfers.push_back(UID_LittleEndianImplicitTransferSyntax);
		OFCondition c = scu.addPresentationContext(UID_VerificationSOPClass, xfers);
		if (c.good())
			c = scu.initNetwork();
		if (c.good())
			c = scu.negotiateAssociation();
		if (c == NET_EC_NoAcceptablePresentationContexts) {
			set_result(res, USV_SCU_PERMANENT, USV_SCU_NO_STATUS,
			           "peer does not accept Verification");
		} else if (c.bad()) {
			set_result(res, USV_SCU_RETRY, USV_SCU_NO_STATUS, assoc_failure(peer, c));
		} else {
			c = scu.sendECHORequest(0);
			if (c.good())
				set_result(res, USV_SCU_SUCCESS, 0, "echo ok");
			else
				set_result(res, USV_SCU_RETRY, USV_SCU_NO_STATUS,
				           std::string("echo failed: ") + c.text());
			scu.releaseAssociation();
		}
		res->elapsed_ms = ms_since(t0);
		return finish(res, "echo", errbuf, errlen);
	} catch (...) {
		set_result(res, USV_SCU_RETRY, USV_SCU_NO_STATUS, "unexpected failure");
		usv_seterr(errbuf, errlen, -EAGAIN, "echo: unexpected failure");
		return -EAGAIN;
	}
}

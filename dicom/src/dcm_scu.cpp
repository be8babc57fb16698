/*
 * NAME
 *	dcm_scu.cpp - C-STORE of files with the real per-instance outcome
 *
 * DESCRIPTION
 *	DcmStorageSCU::sendSOPInstances() returns EC_Normal even when the peer
 *	answered with a failure status; the per-instance truth is only in
 *	notifySOPInstanceSent(). StoreSCU records it for each file of the
 *	call, in transfer-list order. One SCU object per call.
 *
 *	Several files, one association: DcmStorageSCU adds one presentation
 *	context per distinct SOP class / transfer syntax, so at most
 *	USV_SCU_MAX_FILES (128) files always fit one association. Halt mode
 *	stays on, so sendSOPInstances() stops at a file that could not be
 *	sent and returns the condition (its text goes into that file's
 *	reason); after a file without an accepted context it is called again
 *	to go on with the next. The private "pending" statuses DcmStorageSCU
 *	puts into entries it did not send are 0xFFFF (no presentation
 *	context) and 0xFFFE (invalid dataset pointer).
 *
 *	Presentation contexts: DcmStorageSCU proposes the file's own syntax
 *	and, for uncompressed or losslessly compressed files, the uncompressed
 *	ones (decompression mode "lossless only", dataset conversion on, so a
 *	peer that takes only uncompressed data still gets RLE/JPEG-LS/JPEG
 *	lossless objects). Lossy JPEG objects go as they are or not at all.
 *
 *	Classification of failures (see usv/dcm_scu.h) follows the table of
 *	observed DCMTK conditions in notes/dcmtk.md section 3.
 *
 *	Delayed ACKs: DCMTK writes a PDU's header and its data with separate
 *	write() calls, and leaves Nagle's algorithm on unless TCP_NODELAY is
 *	set in its environment. A peer built that way (storescp as shipped,
 *	for one) holds the second part of every C-STORE response until its
 *	first part is acknowledged, and Linux delays that ACK by about 40 ms:
 *	one result per 40 ms. The store associations therefore run on a
 *	transport layer whose connections are plain TCP, like DCMTK's own,
 *	but switch Nagle's algorithm off when they are made (TCP_NODELAY on
 *	the connected socket, so our own C-STORE requests go out at once too)
 *	and TCP_QUICKACK on after every read (the kernel clears it on its
 *	own), so what arrives is acknowledged at once. DCMTK installs such a
 *	layer through its TLS hook; the connection's handshakes are the plain
 *	TCP ones, which do nothing. Both are per-socket options: the
 *	process's environment is never touched.
 *
 *	DICOM TLS: a ClientTLSLayer (a DcmTLSTransportLayer in the requestor
 *	role, made per call from the peer's files) installed through the same
 *	hook; its connections are DcmTLSConnections with the same TCP_NODELAY
 *	and quick ACKs. The layer is declared before the SCU object so that
 *	it outlives the association.
 */
#include "usv/dcm_scu.h"
#include "usv/dcm_ae.h"
#include "usv/err.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dctk.h>
#include <dcmtk/dcmnet/diutil.h>
#include <dcmtk/dcmnet/dcmlayer.h>
#include <dcmtk/dcmnet/dcmtrans.h>
#include <dcmtk/dcmnet/dstorscu.h>
#include <dcmtk/dcmnet/dul.h>
#include <dcmtk/dcmnet/scu.h>
#include <dcmtk/dcmtls/tlslayer.h>
#include <dcmtk/dcmtls/tlstrans.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace
{

double ms_since(std::chrono::steady_clock::time_point t0)
{
	return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
	    .count();
}

/* Plain TCP without Nagle's algorithm that acknowledges received data at
 * once (see the top). */
class QuickAckConnection : public DcmTCPConnection
{
      public:
	explicit QuickAckConnection(DcmNativeSocketType s) : DcmTCPConnection(s)
	{
		int one = 1;
		/* best effort, like DCMTK's own TCP_NODELAY: without it only
		 * the 40 ms come back */
		(void)setsockopt(getSocket(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		quickack();
	}
	ssize_t read(void *buf, size_t nbyte) override
	{
		ssize_t n = DcmTCPConnection::read(buf, nbyte);
		quickack();
		return n;
	}

      private:
	void quickack()
	{
		int one = 1;
		/* best effort: without it only the 40 ms come back */
		(void)setsockopt(getSocket(), IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
	}
};

class QuickAckLayer : public DcmTransportLayer
{
      public:
	DcmTransportConnection *createConnection(DcmNativeSocketType s, OFBool) override
	{
		return new QuickAckConnection(s);
	}
};

/* Stateless, shared by every association of the process. */
QuickAckLayer quick_ack_layer;

void quickack_fd(DcmNativeSocketType fd)
{
	int one = 1;
	/* best effort: without it only the 40 ms come back */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}

/* DCMTK's TLS connection with Nagle off and quick ACKs (see the top). */
class QuickAckTLSConnection : public DcmTLSConnection
{
      public:
	QuickAckTLSConnection(DcmNativeSocketType s, SSL *ssl) : DcmTLSConnection(s, ssl), fd_(s)
	{
		int one = 1;
		(void)setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		quickack_fd(fd_);
	}
	ssize_t read(void *buf, size_t nbyte) override
	{
		ssize_t n = DcmTLSConnection::read(buf, nbyte);
		quickack_fd(fd_);
		return n;
	}

      private:
	DcmNativeSocketType fd_;
};

/* OpenSSL's queued errors of this thread as one line (clears the queue). */
std::string openssl_errors()
{
	std::string why;
	unsigned long e;
	while ((e = ERR_get_error()) != 0) {
		const char *r = ERR_reason_error_string(e);
		if (!r || why.find(r) != std::string::npos)
			continue;
		if (!why.empty())
			why += "; ";
		why += r;
	}
	return why;
}

/* The requestor side of DICOM TLS for one call (see the top). */
class ClientTLSLayer : public DcmTLSTransportLayer
{
      public:
	ClientTLSLayer() : DcmTLSTransportLayer(NET_REQUESTOR, nullptr, OFFalse)
	{
	}
	/* loads the peer's files; "" or why not */
	std::string setup(const usv_scu_peer *p)
	{
		static const DcmTLSSecurityProfile profiles[] = {
		    TSP_Profile_BCP195, TSP_Profile_BCP195_ND, TSP_Profile_BCP195_Extended};
		ERR_clear_error();
		if (!*this)
			return "cannot create a TLS context: " + openssl_errors();
		if ((int)p->tls_profile < 0 || (int)p->tls_profile > 2)
			return "unknown TLS profile";
		OFCondition c = setTLSProfile(profiles[p->tls_profile]);
		if (c.bad())
			return std::string("TLS profile: ") + c.text();
		bool cert = p->tls_certificate && *p->tls_certificate;
		bool key = p->tls_private_key && *p->tls_private_key;
		if (cert != key)
			return "client certificate and private key go together";
		if (cert) {
			c = setPrivateKeyFile(p->tls_private_key, DCF_Filetype_PEM);
			if (c.bad())
				return std::string(p->tls_private_key) +
				       ": cannot load the private key (PEM, unencrypted): " +
				       or_text(c);
			c = setCertificateFile(p->tls_certificate, DCF_Filetype_PEM);
			if (c.bad())
				return std::string(p->tls_certificate) +
				       ": cannot load the certificate (PEM): " + or_text(c);
			if (!checkPrivateKeyMatchesCertificate()) {
				ERR_clear_error();
				return std::string(p->tls_private_key) +
				       ": the private key does not belong to the certificate";
			}
		}
		c = addTrustedCertificateFile(p->tls_ca_file, DCF_Filetype_PEM);
		if (c.bad())
			return std::string(p->tls_ca_file) +
			       ": cannot load the CA certificates (PEM): " + or_text(c);
		setCertificateVerification(DCV_requireCertificate);
		c = activateCipherSuites();
		if (c.bad())
			return "TLS cipher suites: " + or_text(c);
		ERR_clear_error();
		return "";
	}
	DcmTransportConnection *createConnection(DcmNativeSocketType s, OFBool secure) override
	{
		if (!secure)
			return new QuickAckConnection(s);
		SSL *ssl = SSL_new(getNativeHandle());
		if (!ssl)
			return nullptr;
		SSL_set_fd(ssl, (int)s);
		return new QuickAckTLSConnection(s, ssl);
	}

      private:
	static std::string or_text(const OFCondition &c)
	{
		std::string e = openssl_errors();
		return e.empty() ? std::string(c.text()) : e;
	}
};

bool wants_tls(const usv_scu_peer *p)
{
	return p->tls_ca_file && *p->tls_ca_file;
}

/* A plain SCU (C-ECHO) on the same transport layer. */
class EchoSCU : public DcmSCU
{
      public:
	/* after initNetwork(); tls NULL: plain TCP */
	OFCondition useQuickAck(DcmTransportLayer *tls = nullptr)
	{
		return useSecureConnection(tls ? tls : &quick_ack_layer);
	}
};

/* DcmStorageSCU's private status of an entry that had no presentation context */
const Uint16 kNoContext = 0xFFFF;

class StoreSCU : public DcmStorageSCU
{
      public:
	struct Sent {
		size_t file; /* index into the caller's paths */
		bool request_sent;
		Uint16 status;
		double ms;
	};
	std::vector<Sent> sent;                            /* in transfer-list order */
	std::map<std::string, std::deque<size_t>> pending; /* path -> files not yet notified */
	unsigned flags = 0;
	std::chrono::steady_clock::time_point t0;
	bool stop = false;

	ClientTLSLayer *tls = nullptr; /* DICOM TLS, or NULL */

	/* after initNetwork() */
	OFCondition useQuickAck()
	{
		return useSecureConnection(tls ? (DcmTransportLayer *)tls : &quick_ack_layer);
	}

      protected:
	void notifySOPInstanceSent(const TransferEntry &e) override
	{
		std::string path = e.Filename.getCharPointer() ? e.Filename.getCharPointer() : "";
		auto it = pending.find(path);
		if (it == pending.end() || it->second.empty())
			return;
		Sent s{it->second.front(), e.RequestSent != OFFalse, e.ResponseStatusCode,
		       ms_since(t0)};
		it->second.pop_front();
		sent.push_back(s);
		if (!s.request_sent)
			stop = true; /* the association is no longer trusted */
		else if ((flags & USV_SCU_STOP_ON_RETRY) && s.status != kNoContext &&
		         usv_scu_classify_status(s.status) == USV_SCU_RETRY)
			stop = true;
	}
	OFBool shouldStopAfterCurrentSOPInstance() override
	{
		return stop ? OFTrue : OFFalse;
	}
};

/* the one AE title rule (usv/dcm_ae.h) */
bool valid_ae(const char *ae)
{
	return usv_dcm_ae_check(ae, nullptr, 0) == 0;
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

namespace
{

void untried(usv_scu_result *r, const std::string &why)
{
	set_result(r, USV_SCU_RETRY, USV_SCU_NO_STATUS, "not tried: " + why);
	r->tried = 0;
}

/* The files of one association: everything after set-up. res[] starts out
 * "untried"; files[] are the indexes of the files added to scu, in order.
 * Returns 0 or -EAGAIN (association failed or broke). */
int run_association(StoreSCU &scu, const usv_scu_peer *peer, const std::vector<size_t> &files,
                    usv_scu_result *res, std::string &fail)
{
	OFCondition c = scu.addPresentationContexts();
	if (c == NET_EC_NoPresentationContextsDefined) {
		for (size_t i : files) {
			set_result(&res[i], USV_SCU_PERMANENT, USV_SCU_NO_STATUS,
			           "no presentation context can be proposed for this file");
			res[i].tried = 1;
		}
		return 0;
	}
	if (c.good())
		c = scu.initNetwork();
	if (c.good())
		c = scu.useQuickAck();
	if (c.bad()) {
		fail = std::string("network set-up failed: ") + c.text();
		set_result(&res[files[0]], USV_SCU_RETRY, USV_SCU_NO_STATUS, fail);
		res[files[0]].tried = 1;
		return -EAGAIN;
	}
	c = scu.negotiateAssociation();
	if (c == NET_EC_NoAcceptablePresentationContexts) {
		for (size_t i : files) {
			set_result(&res[i], USV_SCU_PERMANENT, USV_SCU_NO_STATUS,
			           "peer accepted no presentation context for this SOP class / "
			           "transfer syntax");
			res[i].tried = 1;
		}
		scu.releaseAssociation();
		return 0;
	}
	if (c.bad()) {
		fail = assoc_failure(peer, c);
		set_result(&res[files[0]], USV_SCU_RETRY, USV_SCU_NO_STATUS, fail);
		res[files[0]].tried = 1;
		return -EAGAIN;
	}
	bool broken = false;
	for (;;) {
		size_t before = scu.sent.size();
		c = scu.sendSOPInstances();
		if (c.bad()) {
			/* halted on a file that could not be sent */
			bool no_ctx = scu.sent.size() > before && scu.sent.back().request_sent &&
			              scu.sent.back().status == kNoContext;
			if (no_ctx && !scu.stop)
				continue; /* no context for that one: go on with the next */
			if (!no_ctx) {
				fail = std::string("transfer failed: ") + c.text();
				broken = true;
			}
		}
		break;
	}
	/* the outcome of each file DcmStorageSCU reported */
	size_t last = 0; /* position in files[] after the last reported one */
	std::vector<int> pos(files.size() ? files.back() + 1 : 0, -1);
	for (size_t k = 0; k < files.size(); k++)
		pos[files[k]] = (int)k;
	for (const StoreSCU::Sent &s : scu.sent) {
		usv_scu_result *r = &res[s.file];
		r->tried = 1;
		r->elapsed_ms = s.ms;
		if (!s.request_sent) {
			broken = true;
			if (fail.empty())
				fail = "transfer failed: no response";
			set_result(r, USV_SCU_RETRY, USV_SCU_NO_STATUS, fail);
		} else if (s.status == kNoContext) {
			set_result(r, USV_SCU_PERMANENT, USV_SCU_NO_STATUS,
			           "peer accepted no presentation context for this file's SOP "
			           "class / transfer syntax");
		} else {
			set_result(r, usv_scu_classify_status(s.status), s.status,
			           status_text(s.status));
		}
		if ((size_t)pos[s.file] + 1 > last)
			last = (size_t)pos[s.file] + 1;
	}
	/* files before the last reported one that were not reported were marked
	 * unsendable by DcmStorageSCU without a notification; the rest of a
	 * stopped or broken association stays untried */
	bool stopped = scu.stop || broken;
	for (size_t k = 0; k < files.size(); k++) {
		usv_scu_result *r = &res[files[k]];
		if (r->tried)
			continue;
		if (k < last || !stopped) {
			set_result(r, USV_SCU_PERMANENT, USV_SCU_NO_STATUS,
			           "no accepted presentation context for the file");
			r->tried = 1;
		} else {
			untried(r, broken ? "the association failed on an earlier file"
			                  : "an earlier file was refused for now");
		}
	}
	if (scu.isConnected()) {
		if (broken)
			scu.abortAssociation();
		else
			scu.releaseAssociation();
	}
	return broken ? -EAGAIN : 0;
}

} // namespace

extern "C" int usv_scu_store_many(const usv_scu_peer *peer, const char *const *paths, size_t n,
                                  unsigned flags, usv_scu_result *res, char *errbuf, size_t errlen)
{
	auto t0 = std::chrono::steady_clock::now();
	if (!res || n == 0 || n > USV_SCU_MAX_FILES || !paths)
		return usv_seterr(errbuf, errlen, -EINVAL, "store: invalid arguments");
	memset(res, 0, n * sizeof *res);
	try {
		usv_scu_result bad;
		memset(&bad, 0, sizeof bad);
		int rc = check_peer(peer, &bad);
		for (size_t i = 0; i < n && rc == 0; i++)
			if (!paths[i] || !*paths[i]) {
				set_result(&bad, USV_SCU_PERMANENT, USV_SCU_NO_STATUS, "no file");
				rc = -EINVAL;
			}
		if (rc) {
			for (size_t i = 0; i < n; i++)
				res[i] = bad;
			return usv_seterr(errbuf, errlen, -EINVAL, "store: %s", bad.reason);
		}
		for (size_t i = 0; i < n; i++)
			untried(&res[i], "not reached");
		std::unique_ptr<ClientTLSLayer> tls; /* outlives scu */
		if (wants_tls(peer)) {
			tls.reset(new ClientTLSLayer());
			std::string why = tls->setup(peer);
			if (!why.empty()) {
				/* like an association that cannot be set up: an
				 * attempt of the first file, the rest untried */
				set_result(&res[0], USV_SCU_RETRY, USV_SCU_NO_STATUS,
				           "TLS: " + why);
				res[0].tried = 1;
				for (size_t i = 1; i < n; i++)
					untried(&res[i], "TLS: " + why);
				for (size_t i = 0; i < n; i++)
					res[i].elapsed_ms = ms_since(t0);
				return usv_seterr(errbuf, errlen, -EAGAIN, "TLS: %s", why.c_str());
			}
		}
		StoreSCU scu;
		scu.tls = tls.get();
		configure(scu, peer);
		scu.setDecompressionMode(DcmStorageSCU::DM_losslessOnly);
		scu.setDatasetConversionMode(OFTrue);
		scu.setHaltOnUnsuccessfulStoreMode(OFTrue);
		scu.flags = flags;
		scu.t0 = t0;

		std::vector<size_t> files;
		for (size_t i = 0; i < n; i++) {
			OFCondition c = scu.addDicomFile(paths[i], ERM_fileOnly, OFTrue);
			if (c.bad()) {
				set_result(&res[i], USV_SCU_PERMANENT, USV_SCU_NO_STATUS,
				           std::string("not a sendable DICOM file: ") + c.text());
				res[i].tried = 1;
				res[i].elapsed_ms = ms_since(t0);
				continue;
			}
			files.push_back(i);
			scu.pending[paths[i]].push_back(i);
		}
		if (files.empty())
			return 0;
		std::string fail;
		rc = run_association(scu, peer, files, res, fail);
		for (size_t i = 0; i < n; i++)
			if (res[i].elapsed_ms == 0)
				res[i].elapsed_ms = ms_since(t0);
		if (rc)
			return usv_seterr(errbuf, errlen, rc, "%s: %s", paths[files[0]],
			                  fail.c_str());
		return 0;
	} catch (const std::bad_alloc &) {
		for (size_t i = 0; i < n; i++)
			if (!res[i].tried || res[i].outcome == USV_SCU_SUCCESS)
				untried(&res[i], "out of memory");
		return usv_seterr(errbuf, errlen, -EAGAIN, "store: out of memory");
	} catch (...) {
		for (size_t i = 0; i < n; i++)
			if (!res[i].tried || res[i].outcome == USV_SCU_SUCCESS)
				untried(&res[i], "unexpected failure");
		return usv_seterr(errbuf, errlen, -EAGAIN, "store: unexpected failure");
	}
}

extern "C" int usv_scu_store(const usv_scu_peer *peer, const char *path, usv_scu_result *res,
                             char *errbuf, size_t errlen)
{
	usv_scu_result dummy;
	const char *what = path ? path : "(null)";

	if (!res)
		res = &dummy;
	memset(res, 0, sizeof *res);
	if (!path || !*path) {
		set_result(res, USV_SCU_PERMANENT, USV_SCU_NO_STATUS, "no file");
		return usv_seterr(errbuf, errlen, -EINVAL, "%s: %s", what, res->reason);
	}
	int rc = usv_scu_store_many(peer, &path, 1, 0, res, NULL, 0);
	if (rc == -EINVAL) {
		usv_seterr(errbuf, errlen, -EINVAL, "%s: %s", what, res->reason);
		return -EINVAL;
	}
	return finish(res, what, errbuf, errlen);
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
		std::unique_ptr<ClientTLSLayer> tls; /* outlives scu */
		if (wants_tls(peer)) {
			tls.reset(new ClientTLSLayer());
			std::string why = tls->setup(peer);
			if (!why.empty()) {
				set_result(res, USV_SCU_RETRY, USV_SCU_NO_STATUS, "TLS: " + why);
				res->elapsed_ms = ms_since(t0);
				return finish(res, "echo", errbuf, errlen);
			}
		}
		EchoSCU scu;
		configure(scu, peer);
		OFList<OFString> xfers;
		xfers.push_back(UID_LittleEndianImplicitTransferSyntax);
		OFCondition c = scu.addPresentationContext(UID_VerificationSOPClass, xfers);
		if (c.good())
			c = scu.initNetwork();
		if (c.good()) /* TCP_NODELAY + quick ACKs, as for stores */
			c = scu.useQuickAck(tls.get());
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

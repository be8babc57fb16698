/*
 * NAME
 *	dcm_scp.cpp - storage SCP: own accept loop, fixed workers, streaming
 *	receive into the spool
 *
 * DESCRIPTION
 *	Threads: one accept thread and cfg.max_assoc workers (see dcmtk.md
 *	2.2/2.3 for why DcmSCPPool/DcmStorageSCP are not used).
 *
 *	Accept thread: our own listen socket (so that a bind address can be
 *	chosen; DCMTK binds INADDR_ANY only). Accepted connections wait in a
 *	small pending list until their first bytes arrive (poll), so a silent
 *	client cannot stall everyone for the ACSE timeout; a pending socket
 *	older than the ACSE timeout is closed. A readable one is handed to
 *	DCMTK through dcmExternalSocketHandle (global, only this thread sets
 *	it) and ASC_receiveAssociation() reads the A-ASSOCIATE-RQ (Nagle's
 *	algorithm is switched off on it first: TCP_NODELAY). If no
 *	worker is free the association is rejected transient, "local limit
 *	exceeded"; otherwise it is queued for a worker.
 *
 *	Worker: a fresh UsvStoreSCP (DcmThreadSCP) per association, sharing
 *	one read-only DcmSharedSCPConfig; run() negotiates (called/calling AE
 *	and peer address checks in the overrides) and dispatches commands.
 *	C-STORE streams to a sink tmp file (receiveSTORERequest with a file
 *	name), is checked, committed (fsync + rename + dir fsync in the sink)
 *	and only then answered.
 */
#include "usv/dcm_scp.h"
#include "usv/dcm_image.h"
#include "usv/err.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcobject.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmnet/assoc.h>
#include <dcmtk/dcmnet/dimse.h>
#include <dcmtk/dcmnet/diutil.h>
#include <dcmtk/dcmnet/dul.h>
#include <dcmtk/dcmnet/scpthrd.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace
{

/* Status codes answered to C-STORE. */
const Uint16 ST_SUCCESS = 0x0000;
const Uint16 ST_OUT_OF_RESOURCES = 0xA700;
const Uint16 ST_MISMATCH = 0xA900;
const Uint16 ST_CANNOT_UNDERSTAND = 0xC000;

const size_t MAX_PENDING = 64;

double now_s()
{
	return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
	    .count();
}

/* Printable, capped copy of peer-supplied text (UIDs, AE titles). */
std::string clean(const char *s, size_t cap = 64)
{
	std::string out;
	for (size_t i = 0; s && s[i] && out.size() < cap; i++) {
		unsigned char c = (unsigned char)s[i];
		out += (c < 0x20 || c > 0x7e) ? '?' : (char)c;
	}
	return out;
}

std::string trim(const OFString &s)
{
	size_t b = 0, e = s.size();
	while (b < e && s[b] == ' ')
		b++;
	while (e > b && s[e - 1] == ' ')
		e--;
	return std::string(s.c_str() + b, e - b);
}

/* A private copy of an allow-list, AE titles trimmed, strings terminated. */
std::vector<usv_scp_peer> copy_peers(const usv_scp_peer *peers, size_t n)
{
	std::vector<usv_scp_peer> v;
	for (size_t i = 0; i < n; i++) {
		usv_scp_peer p = peers[i];
		p.aet[sizeof p.aet - 1] = 0;
		p.addr[sizeof p.addr - 1] = 0;
		std::string t = trim(p.aet);
		snprintf(p.aet, sizeof p.aet, "%s", t.c_str());
		v.push_back(p);
	}
	return v;
}

struct ScpConfigCopy {
	std::string bind, aet;
	int port = 0;
	std::vector<usv_scp_peer> peers; /* under usv_scp::access_mu */
	int max_assoc = 4, acse = 10, dimse = 60;
	unsigned max_pdu = 65536;
	std::vector<std::string> extra;
	std::atomic<uint64_t> min_free{0};
};

} // namespace

struct usv_scp {
	ScpConfigCopy cfg;
	usv_scp_callbacks cbs{};
	usv_scp_sink sink{};
	DcmSharedSCPConfig shared;
	T_ASC_Network *net = nullptr;
	int listen_fd = -1;
	std::atomic<bool> stop{false};
	std::thread acceptor;
	std::vector<std::thread> workers;
	std::mutex mu;
	std::mutex access_mu; /* guards cfg.peers (replaced on reload) */
	std::condition_variable cv;
	std::deque<T_ASC_Association *> queue;
	int idle = 0; /* workers waiting for work, under mu */
	std::atomic<uint64_t> n_acc{0}, n_rej{0}, n_busy{0}, n_active{0}, n_stored{0}, n_fail{0},
	    n_echo{0}, n_bytes{0};
};

namespace
{

class UsvStoreSCP : public DcmThreadSCP
{
      public:
	explicit UsvStoreSCP(usv_scp *s) : s_(s)
	{
	}

	usv_scp *s_;
	unsigned n_stored = 0, n_failed = 0, n_echo = 0;
	uint64_t bytes = 0;
	bool released = false, aborted = false, negotiated = false;
	std::string reject_why, dimse_error, peer_ip, calling;

      protected:
	OFBool checkCalledAETitleAccepted(const OFString &called) override
	{
		if (trim(called) == s_->cfg.aet)
			return OFTrue;
		reject_why = "called AE title not recognised: " + clean(called.c_str(), 16);
		return OFFalse;
	}

	OFBool checkCallingAETitleAccepted(const OFString &ae) override
	{
		calling = trim(ae);
		peer_ip = getPeerIP().c_str();
		std::lock_guard<std::mutex> lk(s_->access_mu);
		if (s_->cfg.peers.empty())
			return OFTrue;
		for (const auto &p : s_->cfg.peers) {
			if (calling != p.aet)
				continue;
			if (!p.addr[0] || peer_ip == p.addr)
				return OFTrue;
		}
		reject_why = "calling AE title not accepted: " + clean(calling.c_str(), 16) +
		             " from " + clean(peer_ip.c_str());
		return OFFalse;
	}

	void notifyAssociationAcknowledge() override
	{
		negotiated = true;
	}
	void notifyReleaseRequest() override
	{
		released = true;
	}
	void notifyAbortRequest() override
	{
		aborted = true;
	}
	void notifyDIMSEError(const OFCondition &cond) override
	{
		dimse_error = cond.text();
	}

	OFCondition handleIncomingCommand(T_DIMSE_Message *msg,
	                                  const DcmPresentationContextInfo &pc) override
	{
		if (msg->CommandField == DIMSE_C_ECHO_RQ) {
			n_echo++;
			s_->n_echo++;
			return handleECHORequest(msg->msg.CEchoRQ, pc.presentationContextID);
		}
		if (msg->CommandField == DIMSE_C_STORE_RQ)
			return handleStore(msg->msg.CStoreRQ, pc);
		return DcmThreadSCP::handleIncomingCommand(msg, pc);
	}

      private:
	void record(const T_DIMSE_C_StoreRQ &rq, const char *id, uint64_t sz, Uint16 st,
	            const std::string &detail, double t0)
	{
		if (!s_->cbs.on_instance)
			return;
		std::string cls = clean(rq.AffectedSOPClassUID),
		            inst = clean(rq.AffectedSOPInstanceUID);
		usv_scp_instance_record r{};
		r.peer_addr = peer_ip.c_str();
		r.calling_aet = calling.c_str();
		r.sop_class_uid = cls.c_str();
		r.sop_instance_uid = inst.c_str();
		r.spool_id = id ? id : "";
		r.bytes = sz;
		r.status = st;
		r.detail = detail.c_str();
		r.seconds = now_s() - t0;
		s_->cbs.on_instance(s_->cbs.ctx, &r);
	}

	/* Checks the received file; returns the status to answer. */
	Uint16 check_file(const char *path, const T_DIMSE_C_StoreRQ &rq, std::string &detail,
	                  std::string &ts)
	{
		DcmFileFormat ff;
		OFCondition c = ff.loadFile(path, EXS_Unknown, EGL_noChange, 4096);
		if (c.bad()) {
			detail = std::string("unreadable data set: ") + c.text();
			return ST_CANNOT_UNDERSTAND;
		}
		DcmDataset *ds = ff.getDataset();
		OFString inst, cls;
		if (ds->findAndGetOFString(DCM_SOPInstanceUID, inst).bad() ||
		    inst != OFString(rq.AffectedSOPInstanceUID)) {
			detail = "SOP Instance UID of the data set differs from the request";
			return ST_MISMATCH;
		}
		if (ds->findAndGetOFString(DCM_SOPClassUID, cls).bad() ||
		    cls != OFString(rq.AffectedSOPClassUID)) {
			detail = "SOP Class UID of the data set differs from the request";
			return ST_MISMATCH;
		}
		Uint16 rows = 0, cols = 0;
		ds->findAndGetUint16(DCM_Rows, rows);
		ds->findAndGetUint16(DCM_Columns, cols);
		if (rows > USV_DCM_MAX_DIM || cols > USV_DCM_MAX_DIM) {
			detail = "image size " + std::to_string(cols) + "x" + std::to_string(rows) +
			         " exceeds the cap of " + std::to_string(USV_DCM_MAX_DIM);
			return ST_CANNOT_UNDERSTAND;
		}
		OFString xs;
		ff.getMetaInfo()->findAndGetOFString(DCM_TransferSyntaxUID, xs);
		ts = xs.c_str();
		return ST_SUCCESS;
	}

	OFCondition handleStore(T_DIMSE_C_StoreRQ &rq, const DcmPresentationContextInfo &pc)
	{
		double t0 = now_s();
		const T_ASC_PresentationContextID pid = pc.presentationContextID;
		std::string detail;
		char path[4096];
		Uint16 st = ST_SUCCESS;

		const uint64_t min_free = s_->cfg.min_free.load();
		if (min_free && s_->sink.low_space(s_->sink.ctx, min_free)) {
			/* A path that cannot be created: DCMTK drains the data
			 * set and reports DIMSE_OUTOFRESOURCES; nothing is written. */
			OFCondition c =
			    receiveSTORERequest(rq, pid, OFString("/dev/null/usv-refused"));
			if (c.bad() && c != DIMSE_OUTOFRESOURCES)
				return c;
			s_->n_fail++;
			n_failed++;
			record(rq, nullptr, 0, ST_OUT_OF_RESOURCES,
			       "free disk space below watermark", t0);
			return sendSTOREResponse(pid, rq, ST_OUT_OF_RESOURCES);
		}
		int rc = s_->sink.tmp_create(s_->sink.ctx, path, sizeof path);
		if (rc) {
			OFCondition c =
			    receiveSTORERequest(rq, pid, OFString("/dev/null/usv-refused"));
			if (c.bad() && c != DIMSE_OUTOFRESOURCES)
				return c;
			s_->n_fail++;
			n_failed++;
			record(rq, nullptr, 0, ST_OUT_OF_RESOURCES,
			       std::string("spool: ") + usv_strerror(rc), t0);
			return sendSTOREResponse(pid, rq, ST_OUT_OF_RESOURCES);
		}
		OFCondition c = receiveSTORERequest(rq, pid, OFString(path));
		if (c == DIMSE_OUTOFRESOURCES) {
			st = ST_OUT_OF_RESOURCES;
			detail = "cannot write spool file";
		} else if (c.bad()) {
			/* association broken: nothing to answer */
			s_->sink.discard(s_->sink.ctx, path);
			s_->n_fail++;
			n_failed++;
			record(rq, nullptr, 0, 0, std::string("receive failed: ") + c.text(), t0);
			return c;
		}
		std::string ts;
		if (st == ST_SUCCESS)
			st = check_file(path, rq, detail, ts);
		struct stat sb;
		uint64_t sz = stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
		char id[64] = "";
		if (st == ST_SUCCESS) {
			rc = s_->sink.commit(s_->sink.ctx, path, id, sizeof id);
			if (rc) {
				st = ST_OUT_OF_RESOURCES;
				detail = std::string("spool commit: ") + usv_strerror(rc);
				id[0] = 0;
			}
		}
		if (st != ST_SUCCESS) {
			s_->sink.discard(s_->sink.ctx, path);
			s_->n_fail++;
			n_failed++;
			record(rq, nullptr, sz, st, detail, t0);
			return sendSTOREResponse(pid, rq, st);
		}
		s_->n_stored++;
		s_->n_bytes += sz;
		n_stored++;
		bytes += sz;
		if (s_->cbs.on_stored) {
			std::string cls = clean(rq.AffectedSOPClassUID),
			            inst = clean(rq.AffectedSOPInstanceUID);
			OFString called = getCalledAETitle();
			std::string called_s = trim(called);
			usv_stored_info info{};
			info.sop_class_uid = cls.c_str();
			info.sop_instance_uid = inst.c_str();
			info.transfer_syntax = ts.c_str();
			info.calling_aet = calling.c_str();
			info.called_aet = called_s.c_str();
			info.peer_addr = peer_ip.c_str();
			info.bytes = sz;
			s_->cbs.on_stored(s_->cbs.ctx, id, &info);
		}
		record(rq, id, sz, ST_SUCCESS, "", t0);
		return sendSTOREResponse(pid, rq, ST_SUCCESS);
	}
};

void assoc_record(usv_scp *s, const char *peer, const char *calling, const char *called,
                  const std::string &outcome, int accepted, const UsvStoreSCP *scp, double t0)
{
	if (!s->cbs.on_assoc)
		return;
	usv_scp_assoc_record r{};
	r.peer_addr = peer;
	r.calling_aet = calling;
	r.called_aet = called;
	r.outcome = outcome.c_str();
	r.accepted = accepted;
	if (scp) {
		r.n_stored = scp->n_stored;
		r.n_failed = scp->n_failed;
		r.n_echo = scp->n_echo;
		r.bytes = scp->bytes;
	}
	r.seconds = now_s() - t0;
	s->cbs.on_assoc(s->cbs.ctx, &r);
}

void run_association(usv_scp *s, T_ASC_Association *a)
{
	double t0 = now_s();
	std::string peer, calling, called;
	if (a->params) {
		peer = clean(a->params->DULparams.callingPresentationAddress);
		calling = clean(a->params->DULparams.callingAPTitle, 16);
		called = clean(a->params->DULparams.calledAPTitle, 16);
	}
	s->n_active++;
	std::string outcome;
	int accepted = 0;
	try {
		UsvStoreSCP scp(s);
		scp.setSharedConfig(s->shared);
		OFCondition c = scp.run(a); /* takes ownership of a */
		accepted = scp.negotiated;
		if (!scp.negotiated)
			outcome = "rejected: " + (scp.reject_why.empty()
			                              ? std::string("negotiation failed")
			                              : scp.reject_why);
		else if (scp.released)
			outcome = "released";
		else if (scp.aborted)
			outcome = "aborted";
		else if (!scp.dimse_error.empty())
			outcome = "error: " + scp.dimse_error;
		else
			outcome = c.good() ? "ended" : std::string("error: ") + c.text();
		if (accepted)
			s->n_acc++;
		else
			s->n_rej++;
		assoc_record(s, peer.c_str(), calling.c_str(), called.c_str(), outcome, accepted,
		             &scp, t0);
	} catch (...) {
		s->n_rej++;
		assoc_record(s, peer.c_str(), calling.c_str(), called.c_str(), "error: exception",
		             0, nullptr, t0);
	}
	s->n_active--;
}

void worker_main(usv_scp *s)
{
	for (;;) {
		T_ASC_Association *a = nullptr;
		{
			std::unique_lock<std::mutex> lk(s->mu);
			s->idle++;
			s->cv.wait(lk, [s] { return s->stop || !s->queue.empty(); });
			s->idle--;
			if (s->queue.empty())
				return; /* stop */
			a = s->queue.front();
			s->queue.pop_front();
		}
		run_association(s, a);
	}
}

void drop(T_ASC_Association *&a)
{
	if (a) {
		ASC_dropAssociation(a);
		ASC_destroyAssociation(&a);
	}
	a = nullptr;
}

/* Takes a connected socket through DCMTK's A-ASSOCIATE-RQ reception and
 * queues the association or rejects it when no worker is free. */
void take_connection(usv_scp *s, int fd)
{
	T_ASC_Association *a = nullptr;
	/* Nagle off: a C-STORE response is one small PDU written in parts, and
	 * with Nagle each waits for the peer's delayed ACK (about 40 ms per
	 * instance on loopback). DCMTK's DUL only does this when the
	 * environment variable TCP_NODELAY asks for it. */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	dcmExternalSocketHandle.set(fd);
	OFCondition c = ASC_receiveAssociation(s->net, &a, s->cfg.max_pdu, NULL, NULL, OFFalse,
	                                       DUL_NOBLOCK, s->cfg.acse);
	dcmExternalSocketHandle.set(DCMNET_INVALID_SOCKET);
	if (c.bad()) {
		if (a)
			drop(a);
		else
			close(fd);
		s->n_rej++;
		assoc_record(s, "", "", "", std::string("error: ") + c.text(), 0, nullptr, now_s());
		return;
	}
	{
		std::lock_guard<std::mutex> lk(s->mu);
		if ((int)s->queue.size() < s->idle) {
			s->queue.push_back(a);
			s->cv.notify_one();
			return;
		}
	}
	std::string peer = clean(a->params->DULparams.callingPresentationAddress),
	            calling = clean(a->params->DULparams.callingAPTitle, 16),
	            called = clean(a->params->DULparams.calledAPTitle, 16);
	T_ASC_RejectParameters rej = {ASC_RESULT_REJECTEDTRANSIENT,
	                              ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
	                              ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED};
	ASC_rejectAssociation(a, &rej);
	drop(a);
	s->n_busy++;
	s->n_rej++;
	assoc_record(s, peer.c_str(), calling.c_str(), called.c_str(),
	             "rejected: all workers busy (local limit exceeded)", 0, nullptr, now_s());
}

void accept_main(usv_scp *s)
{
	struct Pending {
		int fd;
		double since;
	};
	std::vector<Pending> pending;
	std::vector<struct pollfd> pfd;
	while (!s->stop) {
		pfd.clear();
		pfd.push_back({s->listen_fd, POLLIN, 0});
		for (auto &p : pending)
			pfd.push_back({p.fd, POLLIN, 0});
		int n = poll(pfd.data(), pfd.size(), 500);
		if (n < 0 && errno != EINTR)
			break;
		double t = now_s();
		std::vector<Pending> keep;
		for (size_t i = 0; i < pending.size(); i++) {
			short re = pfd[i + 1].revents;
			if (re & (POLLIN | POLLHUP | POLLERR)) {
				/* closed before sending anything (port probes): no
				 * association to record */
				char c;
				if (recv(pending[i].fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) <= 0)
					close(pending[i].fd);
				else
					take_connection(s, pending[i].fd);
			} else if (t - pending[i].since > s->cfg.acse)
				close(pending[i].fd);
			else
				keep.push_back(pending[i]);
		}
		pending.swap(keep);
		if (pfd[0].revents & POLLIN) {
			int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
			if (fd >= 0) {
				if (pending.size() >= MAX_PENDING)
					close(fd);
				else
					pending.push_back({fd, t});
			}
		}
	}
	for (auto &p : pending)
		close(p.fd);
}

int open_listen(const ScpConfigCopy &c, char *errbuf, size_t errlen)
{
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)c.port);
	const char *addr = c.bind.empty() ? "0.0.0.0" : c.bind.c_str();
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
		return usv_seterr(errbuf, errlen, -EINVAL,
		                  "bind address %s: not a numeric IPv4 address", addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return usv_seterr(errbuf, errlen, -errno, "socket: %s", strerror(errno));
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 64)) {
		int e = errno;
		close(fd);
		return usv_seterr(errbuf, errlen, -e, "listen on %s:%d: %s", addr, c.port,
		                  strerror(e));
	}
	return fd;
}

int build_shared_config(usv_scp *s, char *errbuf, size_t errlen)
{
	DcmSCPConfig &c = *s->shared.operator->();
	c.setAETitle(s->cfg.aet.c_str());
	c.setRespondWithCalledAETitle(OFFalse);
	c.setMaxReceivePDULength(s->cfg.max_pdu);
	c.setACSETimeout((Uint32)s->cfg.acse);
	c.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
	c.setDIMSETimeout((Uint32)s->cfg.dimse);
	c.setHostLookupEnabled(OFFalse);
	c.setConnectionBlockingMode(DUL_NOBLOCK);
	c.setConnectionTimeout(1);

	OFList<OFString> xs;
	const char *const tsl[] = {
	    UID_JPEGLSLosslessTransferSyntax,
	    UID_JPEGProcess14SV1TransferSyntax,
	    UID_RLELosslessTransferSyntax,
	    UID_JPEG2000LosslessOnlyTransferSyntax,
	    UID_JPEGProcess1TransferSyntax,
	    UID_JPEGProcess2_4TransferSyntax,
	    UID_JPEGLSLossyTransferSyntax,
	    UID_JPEGProcess14TransferSyntax,
	    UID_JPEG2000TransferSyntax,
	    UID_LittleEndianExplicitTransferSyntax,
	    UID_BigEndianExplicitTransferSyntax,
	    UID_DeflatedExplicitVRLittleEndianTransferSyntax,
	    UID_LittleEndianImplicitTransferSyntax,
	};
	for (const char *t : tsl)
		xs.push_back(t);
	std::vector<std::string> sops = {
	    UID_UltrasoundImageStorage,
	    UID_UltrasoundMultiframeImageStorage,
	    UID_RETIRED_UltrasoundImageStorage,
	    UID_RETIRED_UltrasoundMultiframeImageStorage,
	    UID_SecondaryCaptureImageStorage,
	    UID_MultiframeGrayscaleByteSecondaryCaptureImageStorage,
	    UID_MultiframeGrayscaleWordSecondaryCaptureImageStorage,
	    UID_MultiframeTrueColorSecondaryCaptureImageStorage,
	};
	for (const auto &e : s->cfg.extra) {
		bool dup = e == UID_VerificationSOPClass;
		for (const auto &x : sops)
			dup = dup || x == e;
		if (!dup)
			sops.push_back(e);
	}
	for (const auto &sop : sops) {
		OFCondition r = c.addPresentationContext(sop.c_str(), xs);
		if (r.bad())
			return usv_seterr(errbuf, errlen, -EINVAL, "SOP class %s: %s", sop.c_str(),
			                  r.text());
	}
	OFList<OFString> vx;
	vx.push_back(UID_LittleEndianExplicitTransferSyntax);
	vx.push_back(UID_BigEndianExplicitTransferSyntax);
	vx.push_back(UID_LittleEndianImplicitTransferSyntax);
	OFCondition r = c.addPresentationContext(UID_VerificationSOPClass, vx);
	if (r.bad())
		return usv_seterr(errbuf, errlen, -USV_ERR_DICOM, "verification context: %s",
		                  r.text());
	return 0;
}

bool uid_ok(const std::string &u)
{
	if (u.empty() || u.size() > 64)
		return false;
	for (char ch : u)
		if (!((ch >= '0' && ch <= '9') || ch == '.'))
			return false;
	return true;
}

} // namespace

extern "C" void usv_scp_config_init(usv_scp_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->port = 11112;
	cfg->aet = "USVIEW";
	cfg->max_assoc = 4;
	cfg->acse_timeout_s = 10;
	cfg->dimse_timeout_s = 60;
	cfg->max_pdu = 65536;
}

static void stop_threads(usv_scp *s)
{
	s->stop = true;
	if (s->acceptor.joinable())
		s->acceptor.join();
	{
		std::lock_guard<std::mutex> lk(s->mu);
		s->cv.notify_all();
	}
	for (auto &w : s->workers)
		if (w.joinable())
			w.join();
	/* associations queued but never run (stop raced the queue) */
	for (auto *a : s->queue) {
		T_ASC_Association *x = a;
		drop(x);
	}
	s->queue.clear();
	if (s->net)
		ASC_dropNetwork(&s->net);
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	s->listen_fd = -1;
}

extern "C" int usv_scp_start(const usv_scp_config *cfg, const usv_scp_callbacks *cbs,
                             const usv_scp_sink *sink, usv_scp **out, char *errbuf, size_t errlen)
{
	usv_scp *s = nullptr;
	try {
		if (!cfg || !sink || !out || !sink->tmp_create || !sink->commit || !sink->discard ||
		    !sink->low_space)
			return usv_seterr(errbuf, errlen, -EINVAL,
			                  "storage SCP: missing arguments");
		if (cfg->port < 1 || cfg->port > 65535)
			return usv_seterr(errbuf, errlen, -EINVAL, "port %d out of range 1..65535",
			                  cfg->port);
		size_t al = cfg->aet ? strlen(cfg->aet) : 0;
		if (al < 1 || al > 16 || strchr(cfg->aet, '\\'))
			return usv_seterr(errbuf, errlen, -EINVAL,
			                  "AE title must be 1..16 characters");
		if (cfg->max_assoc < 1 || cfg->max_assoc > 64)
			return usv_seterr(errbuf, errlen, -EINVAL,
			                  "max associations %d out of 1..64", cfg->max_assoc);
		if (cfg->acse_timeout_s < 1 || cfg->acse_timeout_s > 3600 ||
		    cfg->dimse_timeout_s < 1 || cfg->dimse_timeout_s > 3600)
			return usv_seterr(errbuf, errlen, -EINVAL, "timeouts must be 1..3600 s");
		if (cfg->max_pdu < 4096 || cfg->max_pdu > 131072)
			return usv_seterr(errbuf, errlen, -EINVAL, "max PDU %u out of 4096..131072",
			                  cfg->max_pdu);
		if (cfg->npeers > USV_SCP_MAX_PEERS || (cfg->npeers && !cfg->peers) ||
		    cfg->nextra > USV_SCP_MAX_EXTRA_SOP || (cfg->nextra && !cfg->extra_sop_classes))
			return usv_seterr(errbuf, errlen, -EINVAL, "too many peers or SOP classes");

		s = new usv_scp();
		s->cfg.bind = cfg->bind_addr ? cfg->bind_addr : "";
		s->cfg.aet = trim(cfg->aet);
		s->cfg.port = cfg->port;
		s->cfg.peers = copy_peers(cfg->peers, cfg->npeers);
		s->cfg.max_assoc = cfg->max_assoc;
		s->cfg.acse = cfg->acse_timeout_s;
		s->cfg.dimse = cfg->dimse_timeout_s;
		s->cfg.max_pdu = cfg->max_pdu;
		for (size_t i = 0; i < cfg->nextra; i++) {
			std::string u = cfg->extra_sop_classes[i] ? cfg->extra_sop_classes[i] : "";
			if (!uid_ok(u)) {
				delete s;
				return usv_seterr(errbuf, errlen, -EINVAL,
				                  "extra SOP class '%s' is not a UID",
				                  clean(u.c_str()).c_str());
			}
			s->cfg.extra.push_back(u);
		}
		s->cfg.min_free = cfg->min_free_bytes;
		if (cbs)
			s->cbs = *cbs;
		s->sink = *sink;

		int rc = build_shared_config(s, errbuf, errlen);
		if (rc) {
			delete s;
			return rc;
		}
		s->listen_fd = open_listen(s->cfg, errbuf, errlen);
		if (s->listen_fd < 0) {
			rc = s->listen_fd;
			s->listen_fd = -1;
			delete s;
			return rc;
		}
		dcmDisableGethostbyaddr.set(OFTrue);
		/* parse as leniently as the decoder (dcm_image.cpp), so that what
		 * the check accepts is what the workers can read */
		dcmIgnoreParsingErrors.set(OFTrue);
		/* With an external socket set, DCMTK skips creating its own
		 * INADDR_ANY listen socket; the value is reset right after. */
		dcmExternalSocketHandle.set(s->listen_fd);
		OFCondition c =
		    ASC_initializeNetwork(NET_ACCEPTOR, cfg->port, cfg->acse_timeout_s, &s->net);
		dcmExternalSocketHandle.set(DCMNET_INVALID_SOCKET);
		if (c.bad()) {
			close(s->listen_fd);
			delete s;
			return usv_seterr(errbuf, errlen, -USV_ERR_DICOM, "DICOM network: %s",
			                  c.text());
		}
		for (int i = 0; i < s->cfg.max_assoc; i++)
			s->workers.emplace_back(worker_main, s);
		s->acceptor = std::thread(accept_main, s);
		*out = s;
		return 0;
	} catch (...) {
		if (s) {
			stop_threads(s);
			delete s;
		}
		return usv_seterr(errbuf, errlen, -USV_ERR_DICOM, "storage SCP: start failed");
	}
}

extern "C" void usv_scp_stop(usv_scp *s)
{
	if (!s)
		return;
	try {
		stop_threads(s);
	} catch (...) {
	}
	delete s;
}

extern "C" void usv_scp_get_stats(usv_scp *s, usv_scp_stats *st)
{
	memset(st, 0, sizeof *st);
	if (!s)
		return;
	st->assoc_accepted = s->n_acc;
	st->assoc_rejected = s->n_rej;
	st->assoc_busy = s->n_busy;
	st->assoc_active = s->n_active;
	st->stored = s->n_stored;
	st->store_failed = s->n_fail;
	st->echo = s->n_echo;
	st->bytes = s->n_bytes;
}

extern "C" int usv_scp_set_access(usv_scp *scp, const usv_scp_peer *peers, size_t npeers,
                                  uint64_t min_free_bytes, char *errbuf, size_t errlen)
{
	try {
		if (!scp || npeers > USV_SCP_MAX_PEERS || (npeers && !peers))
			return usv_seterr(errbuf, errlen, -EINVAL, "too many peers (at most %d)",
			                  USV_SCP_MAX_PEERS);
		std::vector<usv_scp_peer> v = copy_peers(peers, npeers);
		{
			std::lock_guard<std::mutex> lk(scp->access_mu);
			scp->cfg.peers.swap(v);
		}
		scp->cfg.min_free.store(min_free_bytes);
		return 0;
	} catch (const std::bad_alloc &) {
		return usv_seterr(errbuf, errlen, -ENOMEM, "out of memory");
	} catch (...) {
		return usv_seterr(errbuf, errlen, -USV_ERR_DICOM, "cannot update the access list");
	}
}

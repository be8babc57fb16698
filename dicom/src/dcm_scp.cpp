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
 *	chosen; DCMTK binds INADDR_ANY only), non-blocking.
 *
 *	DESIGN: negotiation never waits on the network. ASC_receiveAssociation
 *	reads the A-ASSOCIATE-RQ on the thread that calls it, and it can only
 *	be given a socket through dcmExternalSocketHandle, a process-global,
 *	so it cannot run on several threads at once; a peer that sent part of
 *	an RQ and then stalled would block that thread for the ACSE timeout.
 *	So an accepted connection stays "half-open" in the accept thread's
 *	pending list, and DCMTK sees it only once the WHOLE RQ PDU lies in the
 *	kernel's receive buffer; then the read cannot block. Per connection:
 *	  - recv(MSG_PEEK) of the 6-byte PDU header: the first byte must be
 *	    0x01 (A-ASSOCIATE-RQ) and the length 68..MAX_RQ_LEN, otherwise the
 *	    connection is closed at once (not DICOM: counted);
 *	  - FIONREAD tells how much has arrived; until 6 + length bytes are
 *	    there, SO_RCVLOWAT is set to that amount, so poll() wakes the
 *	    thread only when it is complete (or on EOF) and nothing spins.
 *	    Linux (4.19+) also grows the receive buffer and window to fit
 *	    the low-water mark, so a large RQ can arrive without a read. A
 *	    socket that poll() reports readable without progress (window
 *	    nearly closed) is looked at again every RECHECK_S instead.
 *	  - complete: SO_RCVLOWAT back to 1, TCP_NODELAY, then
 *	    ASC_receiveAssociation through dcmExternalSocketHandle (only this
 *	    thread sets it).
 *	The pending list is bounded per peer address (max_pending_per_address)
 *	and overall (MAX_PENDING, at most half of RLIMIT_NOFILE). At a cap the
 *	OLDEST half-open connection (of the same address first) is closed
 *	instead of refusing the new one: a flood of stalled connections only
 *	churns itself, and a real client arriving after it always gets its
 *	turn. Half-open connections older than the ACSE timeout are closed;
 *	accept() failing for lack of descriptors also evicts the oldest. The
 *	cost of a half-open connection is one descriptor, one list entry and
 *	its kernel buffers; nothing is allocated in user space per byte.
 *
 *	After negotiation: when max_assoc_per_address is set and that many
 *	associations of the peer's address are queued or running, or when no
 *	worker is free, the association is rejected transient, "local limit
 *	exceeded"; otherwise it is queued for a worker. An established
 *	association that goes silent ends after the DIMSE timeout: DCMTK
 *	waits that long for the next PDU header (DIMSE_NONBLOCKING), but
 *	reads a PDU body blocking, bounded only by the socket timeouts, which
 *	take_connection() sets to the DIMSE timeout per socket (DCMTK's own
 *	are process-wide, 60 s). After its A-ABORT DCMTK waits up to the ACSE
 *	timeout for the peer to close. A peer that sends at least a byte per
 *	DIMSE timeout is slow, not stalled, and keeps its worker;
 *	max_assoc_per_address bounds how many workers one address can hold.
 *
 *	TLS PORT (DESIGN). On the TLS port the A-ASSOCIATE-RQ is encrypted,
 *	so the peek above cannot see it, and DCMTK's own TLS accept
 *	(DcmTLSConnection::serverSideHandshake, a blocking SSL_accept inside
 *	ASC_receiveAssociation) would let one peer that stops in the middle
 *	of its handshake hold the accept thread. Peeking for a complete
 *	ClientHello first would not help: a peer can send that and stall at
 *	its next flight. So the accept thread does the TLS work itself,
 *	non-blocking, for every half-open TLS connection in the same pending
 *	list (same per-address and overall caps, same eviction of the
 *	oldest, same ACSE timeout from accept() to a complete RQ):
 *	  - the first byte must start a TLS handshake record (0x16); plain
 *	    DICOM (0x01) or anything else is refused and reported at once;
 *	  - SSL_accept on the non-blocking socket with an SSL made from the
 *	    current DcmTLSTransportLayer's SSL_CTX (profile, certificate,
 *	    key, trusted CAs and verification mode set through DCMTK); poll
 *	    waits for what OpenSSL wants (read or write); a refused handshake
 *	    is reported with OpenSSL's reason and the verification result;
 *	  - then SSL_read of the 6-byte PDU header (0x01, length checked as
 *	    above) and of the whole RQ into a buffer of the connection;
 *	  - complete: the socket goes back to blocking and DCMTK gets it
 *	    through dcmExternalSocketHandle on a second T_ASC_Network (a
 *	    network's transport layer is either plain or TLS) whose transport
 *	    layer (ReadyTLSLayer) hands out the prepared connection: a
 *	    DcmTLSConnection over the established SSL whose handshake is a
 *	    no-op and whose first reads return the buffered RQ. From there
 *	    on it is DCMTK's TLS connection (SSL_read/SSL_write, SSL_pending
 *	    in networkDataAvailable) with the same per-socket timeouts.
 *	The handshake's CPU work (one signature and key exchange, about a
 *	millisecond) runs on the accept thread; a flood of handshakes slows
 *	new connections, it cannot stop them (the oldest half-open ones are
 *	evicted). Certificates are reloaded by building a new
 *	DcmTLSTransportLayer and swapping a shared_ptr under tls_mu: each
 *	half-open connection keeps the layer it started with, an established
 *	SSL keeps its SSL_CTX by OpenSSL's reference count.
 *
 *	PROXY PROTOCOL (DESIGN). A connection from a proxy_from address starts
 *	"proxy_wait": before anything else, look_proxy() peeks up to
 *	USV_PROXY_V2_MAX bytes and asks usv_proxy_v2_parse (proxy_v2.c, plain
 *	C) whether the header is complete; while it is not, SO_RCVLOWAT is
 *	its size, exactly as for the RQ, and the ACSE timeout runs from
 *	accept(). A complete header is consumed with one recv() (it is all in
 *	the buffer) and the connection goes on as a plain or TLS one whose
 *	peer is the carried address (Pending::peer): the per-address caps,
 *	the association queue (assoc_by_addr), DCMTK's
 *	callingPresentationAddress, the allowed_peers check and every record
 *	use it. While its header is awaited a balancer connection is not
 *	counted against max_pending_per_address (all of them share the
 *	balancer's address); once read, cap_carried() applies the cap to the
 *	carried address.
 *
 *	DRAINING. usv_scp_drain() shuts the listen sockets down (on Linux a
 *	listening socket then stops listening, so the kernel refuses new
 *	connections and a balancer retries elsewhere at once) and the accept
 *	thread closes its half-open connections. Queued and running
 *	associations go on; each has a duplicate of its socket in
 *	usv_scp::live (ours, closed only under mu after the association
 *	ends), so usv_scp_abort() can shut them down without racing DCMTK's
 *	close of the original descriptor.
 *
 *	Worker: a fresh UsvStoreSCP (DcmThreadSCP) per association, sharing
 *	one read-only DcmSharedSCPConfig; run() negotiates (called/calling AE
 *	and peer address checks in the overrides) and dispatches commands.
 *	C-STORE streams to a sink tmp file (receiveSTORERequest with a file
 *	name), is checked, committed (fsync + rename + dir fsync in the sink)
 *	and only then answered.
 */
#include "usv/dcm_scp.h"
#include "usv/dcm_ae.h"
#include "usv/dcm_image.h"
#include "usv/err.h"
#include "usv/proxy_v2.h"

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
#include <dcmtk/dcmtls/tlslayer.h>
#include <dcmtk/dcmtls/tlstrans.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
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

/* Half-open connections (see DESIGN): overall cap (further bounded by
 * RLIMIT_NOFILE at start), the largest A-ASSOCIATE-RQ accepted (a
 * 128-context RQ with a dozen transfer syntaxes each is about 45 KiB)
 * and the smallest valid one (the fixed fields), and how often a socket
 * that is readable without progress is looked at. */
const size_t MAX_PENDING = 512;
const uint32_t MAX_RQ_LEN = 256 * 1024;
const uint32_t MIN_RQ_LEN = 68;
const double RECHECK_S = 0.1;

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

/* TLS settings, copied (paths are the caller's strings). */
struct TlsFiles {
	int port = 0;
	std::string cert, key, ca;
	bool require = true;
	usv_tls_profile profile = USV_TLS_BCP195;
};

TlsFiles copy_tls(const usv_scp_tls &t)
{
	TlsFiles f;
	f.port = t.port;
	f.cert = t.certificate ? t.certificate : "";
	f.key = t.private_key ? t.private_key : "";
	f.ca = t.ca_file ? t.ca_file : "";
	f.require = t.require_client_certificate != 0;
	f.profile = t.profile;
	return f;
}

/* OpenSSL's queued errors of this thread as one line (clears the queue). */
std::string openssl_errors()
{
	std::string why;
	unsigned long e;
	while ((e = ERR_get_error()) != 0) {
		const char *r = ERR_reason_error_string(e);
		char buf[256];
		if (!r) {
			ERR_error_string_n(e, buf, sizeof buf);
			r = buf;
		}
		if (why.find(r) != std::string::npos)
			continue;
		if (!why.empty())
			why += "; ";
		why += r;
	}
	return why;
}

/* A server TLS context from f, or nullptr with why. All files are read
 * now; the context does not refer to them afterwards. */
std::shared_ptr<DcmTLSTransportLayer> make_server_tls(const TlsFiles &f, std::string &why)
{
	static const DcmTLSSecurityProfile profiles[] = {TSP_Profile_BCP195, TSP_Profile_BCP195_ND,
	                                                 TSP_Profile_BCP195_Extended};
	if ((int)f.profile < 0 || (int)f.profile > 2) {
		why = "unknown TLS profile";
		return nullptr;
	}
	if (f.cert.empty() || f.key.empty()) {
		why = "the TLS port needs a certificate and a private key";
		return nullptr;
	}
	if (f.require && f.ca.empty()) {
		why = "require_client_certificate needs a ca_file to verify clients against";
		return nullptr;
	}
	ERR_clear_error();
	auto l = std::make_shared<DcmTLSTransportLayer>(NET_ACCEPTOR, nullptr, OFFalse);
	if (!*l) {
		why = "cannot create a TLS context: " + openssl_errors();
		return nullptr;
	}
	OFCondition c = l->setTLSProfile(profiles[f.profile]);
	if (c.bad()) {
		why = std::string("TLS profile: ") + c.text();
		return nullptr;
	}
	c = l->setPrivateKeyFile(f.key.c_str(), DCF_Filetype_PEM);
	if (c.bad()) {
		std::string e = openssl_errors();
		why = f.key + ": cannot load the private key (PEM, unencrypted): " +
		      (e.empty() ? c.text() : e);
		return nullptr;
	}
	c = l->setCertificateFile(f.cert.c_str(), DCF_Filetype_PEM);
	if (c.bad()) {
		std::string e = openssl_errors();
		why = f.cert + ": cannot load the certificate (PEM): " + (e.empty() ? c.text() : e);
		return nullptr;
	}
	if (!l->checkPrivateKeyMatchesCertificate()) {
		ERR_clear_error();
		why = f.key + ": the private key does not belong to the certificate " + f.cert;
		return nullptr;
	}
	SSL_CTX *ctx = l->getNativeHandle();
	if (!f.ca.empty()) {
		c = l->addTrustedCertificateFile(f.ca.c_str(), DCF_Filetype_PEM);
		if (c.bad()) {
			std::string e = openssl_errors();
			why = f.ca + ": cannot load the CA certificates (PEM): " +
			      (e.empty() ? c.text() : e);
			return nullptr;
		}
		/* tell clients which CAs we accept (CertificateRequest) */
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(f.ca.c_str());
		if (names)
			SSL_CTX_set_client_CA_list(ctx, names);
		ERR_clear_error();
	}
	l->setCertificateVerification(f.require      ? DCV_requireCertificate
	                              : f.ca.empty() ? DCV_ignoreCertificate
	                                             : DCV_checkCertificate);
	c = l->activateCipherSuites();
	if (c.bad()) {
		std::string e = openssl_errors();
		why = std::string("TLS cipher suites: ") + (e.empty() ? c.text() : e);
		return nullptr;
	}
	/* session resumption with client certificates needs an id context */
	static const unsigned char sid[] = "usviewd";
	SSL_CTX_set_session_id_context(ctx, sid, sizeof sid - 1);
	ERR_clear_error();
	return l;
}

/* Why a handshake step (return value ret) failed, for the log. */
std::string handshake_failure(SSL *ssl, int ret, int err)
{
	int e = SSL_get_error(ssl, ret);
	std::string why = openssl_errors();
	long vr = SSL_get_verify_result(ssl);
	if (vr != X509_V_OK) {
		if (!why.empty())
			why += ": ";
		why += std::string("client certificate: ") + X509_verify_cert_error_string(vr);
	}
	if (why.empty()) {
		if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && err == 0))
			why = "connection closed by the peer during the handshake";
		else if (e == SSL_ERROR_SYSCALL)
			why = strerror(err);
		else
			why = "TLS error " + std::to_string(e);
	}
	return why;
}

/* "subject ..., issuer ..., serial 0x..., not after ..." of a certificate. */
std::string cert_line(X509 *x, bool subject_only)
{
	if (!x)
		return "";
	char name[512] = "";
	X509_NAME_oneline(X509_get_subject_name(x), name, sizeof name);
	std::string out = name;
	if (subject_only)
		return out;
	X509_NAME_oneline(X509_get_issuer_name(x), name, sizeof name);
	out = "subject " + out + ", issuer " + name;
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), nullptr);
	if (bn) {
		char *hex = BN_bn2hex(bn);
		if (hex) {
			out += std::string(", serial 0x") + hex;
			OPENSSL_free(hex);
		}
		BN_free(bn);
	}
	BIO *b = BIO_new(BIO_s_mem());
	if (b) {
		if (ASN1_TIME_print(b, X509_get0_notAfter(x)) > 0) {
			char *p = nullptr;
			long n = BIO_get_mem_data(b, &p);
			out += ", not after " + std::string(p, (size_t)n);
		}
		BIO_free(b);
	}
	return out;
}

/* A DcmTLSConnection whose handshake has been done by the accept thread and
 * whose A-ASSOCIATE-RQ has already been read (see TLS PORT). */
class ReadyTLSConnection : public DcmTLSConnection
{
      public:
	ReadyTLSConnection(DcmNativeSocketType fd, SSL *ssl, std::string rq)
	    : DcmTLSConnection(fd, ssl), fd_(fd), rq_(std::move(rq))
	{
	}
	DcmNativeSocketType fd() const
	{
		return fd_;
	}
	OFCondition serverSideHandshake() override
	{
		return EC_Normal; /* done before */
	}
	ssize_t read(void *buf, size_t nbyte) override
	{
		if (off_ < rq_.size()) {
			size_t n = std::min(nbyte, rq_.size() - off_);
			memcpy(buf, rq_.data() + off_, n);
			off_ += n;
			if (off_ == rq_.size())
				std::string().swap(rq_), off_ = 0;
			return (ssize_t)n;
		}
		return DcmTLSConnection::read(buf, nbyte);
	}
	OFBool networkDataAvailable(int timeout) override
	{
		if (off_ < rq_.size())
			return OFTrue;
		return DcmTLSConnection::networkDataAvailable(timeout);
	}

      private:
	DcmNativeSocketType fd_;
	std::string rq_;
	size_t off_ = 0;
};

/* The TLS network's transport layer: hands out the one connection the
 * accept thread prepared for the ASC_receiveAssociation in progress. */
class ReadyTLSLayer : public DcmTransportLayer
{
      public:
	ReadyTLSConnection *next = nullptr; /* only the accept thread sets it */
	DcmTransportConnection *createConnection(DcmNativeSocketType fd, OFBool secure) override
	{
		if (!secure || !next || next->fd() != fd)
			return nullptr;
		ReadyTLSConnection *c = next;
		next = nullptr;
		return c;
	}
};

struct ScpConfigCopy {
	std::string bind, aet;
	int port = 0;
	std::vector<usv_scp_peer> peers; /* under usv_scp::access_mu */
	int max_assoc = 4, acse = 10, dimse = 60;
	unsigned max_pdu = 65536;
	std::vector<std::string> extra;
	std::atomic<uint64_t> min_free{0};
	int max_pending_addr = 32, max_assoc_addr = 0;
	size_t max_pending = MAX_PENDING;
	TlsFiles tls;                      /* as started; tls.port 0: none */
	std::vector<usv_cidr4> proxy_from; /* PROXY v2 senders; empty: none */
};

/* An association waiting for a worker, with its peer's address, and for
 * TLS the subject of the client's certificate. */
struct Queued {
	T_ASC_Association *a;
	std::string addr; /* the peer's, or the one its PROXY header carried */
	bool tls = false;
	std::string cert;
	int dup = -1; /* our duplicate of its socket, for usv_scp_abort */
};

} // namespace

struct usv_scp {
	ScpConfigCopy cfg;
	usv_scp_callbacks cbs{};
	usv_scp_sink sink{};
	DcmSharedSCPConfig shared;
	T_ASC_Network *net = nullptr;
	int listen_fd = -1;
	T_ASC_Network *tls_net = nullptr; /* its transport layer is tls_ready */
	int tls_fd = -1;
	ReadyTLSLayer tls_ready;
	std::mutex tls_mu; /* guards tls_layer (replaced on reload) */
	std::shared_ptr<DcmTLSTransportLayer> tls_layer;
	std::atomic<bool> stop{false};
	std::atomic<bool> draining{false}; /* usv_scp_drain: no more accepts */
	std::thread acceptor;
	std::vector<std::thread> workers;
	std::mutex mu;
	std::mutex access_mu; /* guards cfg.peers (replaced on reload) */
	std::condition_variable cv;
	std::condition_variable ready; /* a worker became idle (start waits for all) */
	std::deque<Queued> queue;
	int idle = 0;                             /* workers waiting for work, under mu */
	std::map<std::string, int> assoc_by_addr; /* queued + running, under mu */
	std::vector<int> live;                    /* Queued::dup of queued + running, under mu */
	std::atomic<uint64_t> n_acc{0}, n_rej{0}, n_busy{0}, n_active{0}, n_stored{0}, n_fail{0},
	    n_echo{0}, n_bytes{0}, n_evicted{0}, n_halfopen_timeout{0}, n_not_dicom{0},
	    n_rej_addr{0}, n_halfopen{0}, n_tls_fail{0}, n_proxy_refused{0};
};

namespace
{

class UsvStoreSCP : public DcmThreadSCP
{
      public:
	UsvStoreSCP(usv_scp *s, const std::string &addr) : s_(s), addr_(addr)
	{
	}

	usv_scp *s_;
	std::string addr_; /* the peer's address (carried by a PROXY header) */
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
		peer_ip = addr_;
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
                  const std::string &outcome, int accepted, const UsvStoreSCP *scp, double t0,
                  bool tls = false, const std::string &cert = "")
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
	r.tls = tls;
	std::string c = clean(cert.c_str(), 256);
	r.peer_certificate = c.c_str();
	s->cbs.on_assoc(s->cbs.ctx, &r);
}

void run_association(usv_scp *s, const Queued &q)
{
	T_ASC_Association *a = q.a;
	double t0 = now_s();
	std::string peer, calling, called;
	peer = clean(q.addr.c_str());
	if (a->params) {
		calling = clean(a->params->DULparams.callingAPTitle, 16);
		called = clean(a->params->DULparams.calledAPTitle, 16);
	}
	s->n_active++;
	std::string outcome;
	int accepted = 0;
	try {
		UsvStoreSCP scp(s, q.addr);
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
		             &scp, t0, q.tls, q.cert);
	} catch (...) {
		s->n_rej++;
		assoc_record(s, peer.c_str(), calling.c_str(), called.c_str(), "error: exception",
		             0, nullptr, t0, q.tls, q.cert);
	}
	s->n_active--;
}

/* Closes our duplicate of an association's socket. Under s->mu. */
void forget_live(usv_scp *s, int dup)
{
	if (dup < 0)
		return;
	auto it = std::find(s->live.begin(), s->live.end(), dup);
	if (it != s->live.end())
		s->live.erase(it);
	close(dup);
}

void worker_main(usv_scp *s)
{
	for (;;) {
		Queued q;
		{
			std::unique_lock<std::mutex> lk(s->mu);
			s->idle++;
			s->ready.notify_one();
			s->cv.wait(lk, [s] { return s->stop || !s->queue.empty(); });
			s->idle--;
			if (s->queue.empty())
				return; /* stop */
			q = s->queue.front();
			s->queue.pop_front();
		}
		run_association(s, q);
		std::lock_guard<std::mutex> lk(s->mu);
		forget_live(s, q.dup);
		auto it = s->assoc_by_addr.find(q.addr);
		if (it != s->assoc_by_addr.end() && --it->second <= 0)
			s->assoc_by_addr.erase(it);
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

/* Takes a connected socket whose whole A-ASSOCIATE-RQ has arrived through
 * DCMTK's RQ reception and queues the association, or rejects it when the
 * peer's address is at max_assoc_per_address or no worker is free. On the
 * TLS port, tls is the prepared connection over fd (taken over here) and
 * cert the subject of the client's certificate. */
void take_connection(usv_scp *s, int fd, const std::string &addr, ReadyTLSConnection *tls = nullptr,
                     const std::string &cert = "")
{
	T_ASC_Association *a = nullptr;
	/* Nagle off: a C-STORE response is one small PDU written in parts, and
	 * with Nagle each waits for the peer's delayed ACK (about 40 ms per
	 * instance on loopback). DCMTK's DUL only does this when the
	 * environment variable TCP_NODELAY asks for it. */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	s->tls_ready.next = tls;
	dcmExternalSocketHandle.set(fd);
	OFCondition c =
	    ASC_receiveAssociation(tls ? s->tls_net : s->net, &a, s->cfg.max_pdu, NULL, NULL,
	                           tls ? OFTrue : OFFalse, DUL_NOBLOCK, s->cfg.acse);
	dcmExternalSocketHandle.set(DCMNET_INVALID_SOCKET);
	bool unused = tls && s->tls_ready.next; /* DCMTK did not take it */
	s->tls_ready.next = nullptr;
	if (c.bad()) {
		if (a)
			drop(a);
		if (unused)
			delete tls; /* closes fd */
		else if (!a && !tls)
			close(fd);
		s->n_rej++;
		assoc_record(s, addr.c_str(), "", "", std::string("error: ") + c.text(), 0, nullptr,
		             now_s(), tls != nullptr, cert);
		return;
	}
	/* DCMTK knows the socket's address; the carried one stands for the
	 * peer (getPeerIP, logs of DcmSCP) */
	if (a && a->params) {
		char *cpa = a->params->DULparams.callingPresentationAddress;
		snprintf(cpa, sizeof a->params->DULparams.callingPresentationAddress, "%s",
		         addr.c_str());
	}
	/* DCMTK reads a PDU body blocking once its header has arrived (only
	 * the wait for a header honours the DIMSE timeout), and its socket
	 * timeouts are the process-wide dcmSocketReceiveTimeout/SendTimeout
	 * (60 s). Per socket, a peer that stops in the middle of a PDU (or
	 * stops reading our answers) gets dimse_timeout, like one that goes
	 * silent between messages. */
	struct timeval tv = {s->cfg.dimse, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	bool per_addr = false;
	{
		std::lock_guard<std::mutex> lk(s->mu);
		auto it = s->assoc_by_addr.find(addr);
		int n = it == s->assoc_by_addr.end() ? 0 : it->second;
		if (s->cfg.max_assoc_addr > 0 && n >= s->cfg.max_assoc_addr) {
			per_addr = true;
		} else if ((int)s->queue.size() < s->idle) {
			/* ours, so that usv_scp_abort never touches a descriptor
			 * DCMTK has closed and the process reused */
			int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
			s->queue.push_back({a, addr, tls != nullptr, cert, dup});
			if (dup >= 0)
				s->live.push_back(dup);
			s->assoc_by_addr[addr] = n + 1;
			s->cv.notify_one();
			return;
		}
	}
	std::string peer = clean(addr.c_str()),
	            calling = clean(a->params->DULparams.callingAPTitle, 16),
	            called = clean(a->params->DULparams.calledAPTitle, 16);
	T_ASC_RejectParameters rej = {ASC_RESULT_REJECTEDTRANSIENT,
	                              ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
	                              ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED};
	ASC_rejectAssociation(a, &rej);
	drop(a);
	if (per_addr)
		s->n_rej_addr++;
	else
		s->n_busy++;
	s->n_rej++;
	assoc_record(s, peer.c_str(), calling.c_str(), called.c_str(),
	             per_addr ? "rejected: too many associations from this address (local "
	                        "limit exceeded)"
	                      : "rejected: all workers busy (local limit exceeded)",
	             0, nullptr, now_s(), tls != nullptr, cert);
}

/* The TLS side of a half-open connection (see TLS PORT). */
struct TlsPending {
	std::shared_ptr<DcmTLSTransportLayer> layer; /* the context ssl was made from */
	SSL *ssl = nullptr;
	bool want_write = false; /* OpenSSL waits to write, not to read */
	bool established = false;
	std::string rq;   /* the A-ASSOCIATE-RQ read so far */
	std::string why;  /* LOOK_TLS_FAIL: OpenSSL's reason */
	std::string cert; /* subject of the client certificate */
	~TlsPending()
	{
		if (ssl)
			SSL_free(ssl); /* the socket is closed by its owner */
	}
};

/* A connection whose A-ASSOCIATE-RQ has not fully arrived (see DESIGN). */
struct Pending {
	int fd;
	double since;                    /* accepted at */
	double recheck;                  /* > 0: readable without progress; look again then */
	int avail;                       /* bytes seen at the last look */
	int lowat;                       /* SO_RCVLOWAT set on fd */
	uint32_t addr;                   /* socket's peer IPv4 address, network order */
	std::shared_ptr<TlsPending> tls; /* on the TLS port */
	bool proxy_wait = false;         /* from a proxy_from address, header not read yet */
	std::string peer;                /* the peer's address: socket's or carried */
};

enum Look {
	LOOK_WAIT,
	LOOK_READY,
	LOOK_GONE,
	LOOK_JUNK,
	LOOK_TLS_FAIL,
	LOOK_PROXIED,     /* the PROXY header was read and consumed */
	LOOK_PROXY_BAD,   /* from a proxy_from address, no valid header */
	LOOK_PROXY_UNSENT /* a PROXY header from another address */
};

std::string addr_text(uint32_t addr)
{
	char buf[INET_ADDRSTRLEN] = "";
	struct in_addr ia;
	ia.s_addr = addr;
	inet_ntop(AF_INET, &ia, buf, sizeof buf);
	return buf;
}

/* The PROXY v2 header of p (see PROXY PROTOCOL in dcm_scp.h): peeked until
 * complete (SO_RCVLOWAT set to its size, as for the RQ), then consumed. */
Look look_proxy(Pending &p, std::string &why)
{
	unsigned char buf[USV_PROXY_V2_MAX];
	ssize_t n = recv(p.fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
	if (n == 0)
		return LOOK_GONE;
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? LOOK_WAIT
		                                                                 : LOOK_GONE;
	usv_proxy_v2 h;
	size_t need = 0;
	char w[160] = "";
	int rc = usv_proxy_v2_parse(buf, (size_t)n, &h, &need, w, sizeof w);
	if (rc == -EAGAIN) {
		p.avail = (int)n;
		int want = (int)need;
		if (want != p.lowat &&
		    setsockopt(p.fd, SOL_SOCKET, SO_RCVLOWAT, &want, sizeof want) == 0)
			p.lowat = want;
		return LOOK_WAIT;
	}
	if (rc < 0) {
		why = w;
		return LOOK_PROXY_BAD;
	}
	if (recv(p.fd, buf, need, MSG_DONTWAIT) != (ssize_t)need)
		return LOOK_GONE;
	if (!h.local)
		p.peer = h.src;
	p.proxy_wait = false;
	p.avail = 0;
	int one = 1;
	if (p.lowat != 1 && setsockopt(p.fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof one) == 0)
		p.lowat = 1;
	return LOOK_PROXIED;
}

/* Looks at what has arrived on p without consuming it. */
Look look(Pending &p)
{
	unsigned char h[6];
	ssize_t n = recv(p.fd, h, sizeof h, MSG_PEEK | MSG_DONTWAIT);
	if (n == 0)
		return LOOK_GONE; /* closed before sending anything: a port probe */
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? LOOK_WAIT
		                                                                 : LOOK_GONE;
	if (h[0] != 0x01)
		return usv_proxy_v2_signature_prefix(h, (size_t)n) ? LOOK_PROXY_UNSENT : LOOK_JUNK;
	int want = (int)sizeof h;
	if (n == (ssize_t)sizeof h) {
		uint32_t len = (uint32_t)h[2] << 24 | (uint32_t)h[3] << 16 | (uint32_t)h[4] << 8 |
		               (uint32_t)h[5];
		if (len < MIN_RQ_LEN || len > MAX_RQ_LEN)
			return LOOK_JUNK;
		want += (int)len;
	}
	int avail = 0;
	if (ioctl(p.fd, FIONREAD, &avail) < 0)
		return LOOK_GONE;
	p.avail = avail;
	if (avail >= want && n == (ssize_t)sizeof h)
		return LOOK_READY;
	if (want != p.lowat && setsockopt(p.fd, SOL_SOCKET, SO_RCVLOWAT, &want, sizeof want) == 0)
		p.lowat = want;
	return LOOK_WAIT;
}

/* Moves the TLS handshake, then the reading of the A-ASSOCIATE-RQ, of p as
 * far as the data that has arrived allows, without blocking. */
Look look_tls(usv_scp *s, Pending &p)
{
	TlsPending &t = *p.tls;
	if (!t.ssl) {
		/* the first byte: a TLS handshake record, or a refusal that
		 * says what came instead */
		unsigned char b;
		ssize_t n = recv(p.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
		if (n == 0)
			return LOOK_GONE; /* a port probe */
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR
			           ? LOOK_WAIT
			           : LOOK_GONE;
		if (b != 0x16) {
			char why[96];
			snprintf(why, sizeof why,
			         b == 0x01
			             ? "not TLS: a plain DICOM association request on the TLS "
			               "port"
			             : "not TLS: first byte 0x%02X is no handshake record",
			         b);
			t.why = why;
			return LOOK_TLS_FAIL;
		}
		{
			std::lock_guard<std::mutex> lk(s->tls_mu);
			t.layer = s->tls_layer;
		}
		ERR_clear_error();
		t.ssl = t.layer ? SSL_new(t.layer->getNativeHandle()) : nullptr;
		if (!t.ssl || !SSL_set_fd(t.ssl, p.fd)) {
			t.why = "cannot start TLS: " + openssl_errors();
			return LOOK_TLS_FAIL;
		}
		SSL_set_accept_state(t.ssl);
	}
	if (!t.established) {
		ERR_clear_error();
		errno = 0;
		int r = SSL_accept(t.ssl);
		if (r != 1) {
			int e = SSL_get_error(t.ssl, r), err = errno;
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
				t.want_write = e == SSL_ERROR_WANT_WRITE;
				return LOOK_WAIT;
			}
			/* the peer went away in the middle, without an alert: a
			 * closed half-open connection, not a refusal */
			unsigned long q = ERR_peek_error();
			if ((e == SSL_ERROR_SYSCALL && q == 0) ||
			    (e == SSL_ERROR_SSL &&
			     ERR_GET_REASON(q) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
				(void)err;
				ERR_clear_error();
				return LOOK_GONE;
			}
			t.why = handshake_failure(t.ssl, r, err);
			return LOOK_TLS_FAIL;
		}
		t.established = true;
		t.want_write = false;
		X509 *pc = SSL_get_peer_certificate(t.ssl);
		if (pc) {
			t.cert = cert_line(pc, true);
			X509_free(pc);
		}
	}
	/* the A-ASSOCIATE-RQ: header, then exactly the announced length */
	for (;;) {
		size_t want = 6;
		if (t.rq.size() >= 6) {
			const unsigned char *h = (const unsigned char *)t.rq.data();
			uint32_t len = (uint32_t)h[2] << 24 | (uint32_t)h[3] << 16 |
			               (uint32_t)h[4] << 8 | (uint32_t)h[5];
			if (h[0] != 0x01 || len < MIN_RQ_LEN || len > MAX_RQ_LEN)
				return LOOK_JUNK;
			want += len;
		}
		if (t.rq.size() == want && want > 6)
			return LOOK_READY;
		char buf[16384];
		size_t ask = std::min(sizeof buf, want - t.rq.size());
		ERR_clear_error();
		errno = 0;
		int r = SSL_read(t.ssl, buf, (int)ask);
		if (r <= 0) {
			int e = SSL_get_error(t.ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
				t.want_write = e == SSL_ERROR_WANT_WRITE;
				return LOOK_WAIT;
			}
			ERR_clear_error();
			return LOOK_GONE; /* closed or broken before a complete RQ */
		}
		t.rq.append(buf, (size_t)r);
	}
}

/* Closes pending[i]; keeps the list in accept order. */
void evict(std::vector<Pending> &pending, size_t i)
{
	close(pending[i].fd);
	pending.erase(pending.begin() + (ptrdiff_t)i);
}

/* Accepts what is waiting on a listen socket (the TLS one when tls),
 * making room at the caps by closing the oldest half-open connection (of
 * the same address first). */
void accept_new(usv_scp *s, std::vector<Pending> &pending, double t, double &pause_until, bool tls)
{
	for (int k = 0; k < 256; k++) {
		struct sockaddr_in sa;
		socklen_t sl = sizeof sa;
		memset(&sa, 0, sizeof sa);
		/* TLS connections stay non-blocking until handed to DCMTK */
		int fd = accept4(tls ? s->tls_fd : s->listen_fd, (struct sockaddr *)&sa, &sl,
		                 SOCK_CLOEXEC | (tls ? SOCK_NONBLOCK : 0));
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if ((errno == EMFILE || errno == ENFILE) && !pending.empty()) {
				evict(pending, 0);
				s->n_evicted++;
				continue;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				pause_until = t + RECHECK_S; /* out of descriptors or memory */
			return;
		}
		uint32_t addr = sa.sin_addr.s_addr;
		std::string peer = addr_text(addr);
		/* a balancer's connections are counted by the address their
		 * header carries, once it is read */
		bool proxied =
		    usv_cidr4_match(s->cfg.proxy_from.data(), s->cfg.proxy_from.size(), addr);
		size_t same = 0, oldest = 0;
		for (size_t i = 0; i < pending.size() && !proxied; i++)
			if (!pending[i].proxy_wait && pending[i].peer == peer && same++ == 0)
				oldest = i;
		if (!proxied && same >= (size_t)s->cfg.max_pending_addr) {
			evict(pending, oldest);
			s->n_evicted++;
		} else if (pending.size() >= s->cfg.max_pending) {
			evict(pending, 0);
			s->n_evicted++;
		}
		pending.push_back({fd, t, 0, 0, 1, addr,
		                   tls ? std::make_shared<TlsPending>() : nullptr, proxied, peer});
	}
}

/* max_pending_per_address for the address a PROXY header carried: pending[i]
 * (its copy) has just been read; the other half-open connections of that address are
 * pending[0..keep) (kept this round) and pending(i..]. At the cap the oldest
 * is closed (fd -1: removed after the round). */
void cap_carried(usv_scp *s, std::vector<Pending> &pending, const std::string &peer, size_t keep,
                 size_t i)
{
	size_t same = 0, oldest = SIZE_MAX;
	for (size_t j = 0; j < pending.size(); j++) {
		if ((j >= keep && j <= i) || pending[j].fd < 0 || pending[j].proxy_wait ||
		    pending[j].peer != peer)
			continue;
		if (same++ == 0)
			oldest = j;
	}
	if (same >= (size_t)s->cfg.max_pending_addr && oldest != SIZE_MAX) {
		close(pending[oldest].fd);
		pending[oldest].fd = -1;
		s->n_evicted++;
	}
}

/* A TLS connection whose RQ is complete: back to blocking, then to DCMTK. */
void take_tls(usv_scp *s, Pending &p)
{
	TlsPending &t = *p.tls;
	int fl = fcntl(p.fd, F_GETFL);
	if (fl >= 0)
		fcntl(p.fd, F_SETFL, fl & ~O_NONBLOCK);
	ReadyTLSConnection *c = nullptr;
	try {
		c = new ReadyTLSConnection(p.fd, t.ssl, std::move(t.rq));
	} catch (...) {
		close(p.fd);
		return;
	}
	t.ssl = nullptr; /* owned by c now */
	take_connection(s, p.fd, p.peer, c, t.cert);
}

void accept_main(usv_scp *s)
{
	std::vector<Pending> pending;
	std::vector<struct pollfd> pfd;
	double pause_until = 0; /* accept() failed for lack of resources */
	while (!s->stop) {
		if (s->draining && !pending.empty()) {
			for (auto &p : pending)
				close(p.fd);
			pending.clear();
			s->n_halfopen = 0;
		}
		double t = now_s(), wake = t + 0.5;
		bool listening = t >= pause_until && !s->draining;
		if (!listening)
			wake = std::min(wake, pause_until);
		pfd.clear();
		/* a negative fd is skipped by poll() */
		pfd.push_back({listening ? s->listen_fd : -1, POLLIN, 0});
		pfd.push_back({listening ? s->tls_fd : -1, POLLIN, 0});
		for (auto &p : pending) {
			short ev = POLLRDHUP;
			if (p.proxy_wait && p.recheck > 0)
				wake = std::min(wake, p.recheck);
			else if (p.proxy_wait)
				ev |= POLLIN;
			else if (p.tls)
				ev |= p.tls->want_write ? POLLOUT : POLLIN;
			else if (p.recheck > 0)
				wake = std::min(wake, p.recheck);
			else
				ev |= POLLIN;
			pfd.push_back({p.fd, ev, 0});
		}
		if (!pending.empty())
			wake = std::min(wake, pending.front().since + s->cfg.acse);
		int ms = (int)((wake - t) * 1000.0) + 1;
		int n = poll(pfd.data(), pfd.size(), ms < 1 ? 1 : ms > 500 ? 500 : ms);
		if (n < 0 && errno != EINTR)
			break;
		t = now_s();
		size_t keep = 0;
		for (size_t i = 0; i < pending.size(); i++) {
			Pending p = pending[i];
			if (p.fd < 0)
				continue; /* closed by cap_carried */
			short re = n > 0 ? pfd[i + 2].revents : 0;
			Look r = LOOK_WAIT;
			std::string proxy_why;
			bool just_proxied = false;
			if (p.proxy_wait && (re || (p.recheck > 0 && t >= p.recheck))) {
				int before = p.avail;
				p.recheck = 0;
				r = look_proxy(p, proxy_why);
				if (r == LOOK_WAIT &&
				    (re & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)))
					r = LOOK_GONE;
				else if (r == LOOK_WAIT && (re & POLLIN) && p.avail <= before)
					p.recheck = t + RECHECK_S;
				if (r == LOOK_PROXIED) {
					/* the RQ or ClientHello may be there already */
					r = LOOK_WAIT;
					re |= POLLIN;
					just_proxied = true;
					cap_carried(s, pending, p.peer, keep, i);
				}
			}
			if (p.proxy_wait) {
				/* still waiting for (or refused at) the header */
			} else if (p.tls && re) {
				r = look_tls(s, p);
				if (r == LOOK_WAIT && (re & (POLLHUP | POLLERR | POLLNVAL)))
					r = LOOK_GONE;
				else if (r == LOOK_WAIT && (re & POLLRDHUP) && !p.tls->want_write)
					r = LOOK_GONE; /* the peer sent all it will send */
			} else if (re || (p.recheck > 0 && t >= p.recheck)) {
				int before = p.avail;
				p.recheck = 0;
				r = look(p);
				if (r == LOOK_WAIT &&
				    (re & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)))
					r = LOOK_GONE; /* the RQ can no longer complete */
				else if (r == LOOK_WAIT && (re & POLLIN) && p.avail <= before &&
				         !just_proxied)
					p.recheck = t + RECHECK_S;
			}
			if (r == LOOK_READY) {
				int one = 1;
				if (p.tls) {
					take_tls(s, p);
					continue;
				}
				if (p.lowat != 1)
					setsockopt(p.fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof one);
				take_connection(s, p.fd, p.peer);
				continue;
			}
			if (r == LOOK_JUNK)
				s->n_not_dicom++;
			if (r == LOOK_PROXY_BAD || r == LOOK_PROXY_UNSENT) {
				s->n_proxy_refused++;
				s->n_rej++;
				assoc_record(
				    s, p.peer.c_str(), "", "",
				    r == LOOK_PROXY_BAD
				        ? "rejected: no valid PROXY protocol v2 header from "
				          "a listen.proxy_protocol_from address: " +
				              proxy_why
				        : std::string("rejected: a PROXY protocol header from "
				                      "an address not in "
				                      "listen.proxy_protocol_from"),
				    0, nullptr, p.since, p.tls != nullptr);
			}
			if (r == LOOK_TLS_FAIL) {
				s->n_tls_fail++;
				s->n_rej++;
				assoc_record(s, p.peer.c_str(), "", "",
				             "rejected: TLS handshake failed: " + p.tls->why, 0,
				             nullptr, p.since, true);
			}
			if (r != LOOK_WAIT) {
				close(p.fd);
				continue;
			}
			if (t - p.since >= s->cfg.acse) {
				s->n_halfopen_timeout++;
				close(p.fd);
				continue;
			}
			pending[keep++] = p;
		}
		pending.resize(keep);
		/* entries closed by cap_carried */
		pending.erase(std::remove_if(pending.begin(), pending.end(),
		                             [](const Pending &x) { return x.fd < 0; }),
		              pending.end());
		if (listening && n > 0 && (pfd[0].revents & POLLIN))
			accept_new(s, pending, t, pause_until, false);
		if (listening && n > 0 && (pfd[1].revents & POLLIN))
			accept_new(s, pending, t, pause_until, true);
		s->n_halfopen = pending.size();
	}
	for (auto &p : pending)
		close(p.fd);
	s->n_halfopen = 0;
}

int open_listen(const ScpConfigCopy &c, int port, char *errbuf, size_t errlen)
{
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	const char *addr = c.bind.empty() ? "0.0.0.0" : c.bind.c_str();
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
		return usv_seterr(errbuf, errlen, -EINVAL,
		                  "bind address %s: not a numeric IPv4 address", addr);
	/* non-blocking: the accept thread accepts until EAGAIN */
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return usv_seterr(errbuf, errlen, -errno, "socket: %s", strerror(errno));
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 64)) {
		int e = errno;
		close(fd);
		return usv_seterr(errbuf, errlen, -e, "listen on %s:%d: %s", addr, port,
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
	cfg->max_pending_per_address = 32;
	cfg->max_assoc_per_address = 0;
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
	for (auto &q : s->queue) {
		T_ASC_Association *x = q.a;
		drop(x);
		forget_live(s, q.dup);
	}
	s->queue.clear();
	if (s->net)
		ASC_dropNetwork(&s->net);
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	s->listen_fd = -1;
	if (s->tls_net)
		ASC_dropNetwork(&s->tls_net);
	if (s->tls_fd >= 0)
		close(s->tls_fd);
	s->tls_fd = -1;
}

/* A DICOM network on our own listen socket fd (DCMTK binds none). */
static OFCondition init_network(int fd, int port, int acse, T_ASC_Network **net)
{
	/* With an external socket set, DCMTK skips creating its own
	 * INADDR_ANY listen socket; the value is reset right after. */
	dcmExternalSocketHandle.set(fd);
	OFCondition c = ASC_initializeNetwork(NET_ACCEPTOR, port, acse, net);
	dcmExternalSocketHandle.set(DCMNET_INVALID_SOCKET);
	return c;
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
		if (cfg->tls.port < 0 || cfg->tls.port > 65535)
			return usv_seterr(errbuf, errlen, -EINVAL,
			                  "TLS port %d out of range 1..65535 (0: none)",
			                  cfg->tls.port);
		if ((cfg->port < 1 && !(cfg->port == 0 && cfg->tls.port > 0)) || cfg->port > 65535)
			return usv_seterr(errbuf, errlen, -EINVAL,
			                  "port %d out of range 1..65535 (0 only with a TLS port)",
			                  cfg->port);
		if (cfg->tls.port > 0 && cfg->tls.port == cfg->port)
			return usv_seterr(errbuf, errlen, -EINVAL,
			                  "TLS port %d is the plain DICOM port too", cfg->port);
		char why[128];
		if (usv_dcm_ae_check(cfg->aet, why, sizeof why) < 0)
			return usv_seterr(errbuf, errlen, -EINVAL, "%s", why);
		if (cfg->max_assoc < 1 || cfg->max_assoc > 64)
			return usv_seterr(errbuf, errlen, -EINVAL,
			                  "max associations %d out of 1..64", cfg->max_assoc);
		if (cfg->acse_timeout_s < 1 || cfg->acse_timeout_s > 3600 ||
		    cfg->dimse_timeout_s < 1 || cfg->dimse_timeout_s > 3600)
			return usv_seterr(errbuf, errlen, -EINVAL, "timeouts must be 1..3600 s");
		if (cfg->max_pdu < 4096 || cfg->max_pdu > 131072)
			return usv_seterr(errbuf, errlen, -EINVAL, "max PDU %u out of 4096..131072",
			                  cfg->max_pdu);
		if (cfg->max_pending_per_address < 1 || cfg->max_pending_per_address > 1024)
			return usv_seterr(errbuf, errlen, -EINVAL,
			                  "max pending connections per address %d out of 1..1024",
			                  cfg->max_pending_per_address);
		if (cfg->max_assoc_per_address < 0 || cfg->max_assoc_per_address > 64)
			return usv_seterr(errbuf, errlen, -EINVAL,
			                  "max associations per address %d out of 0..64",
			                  cfg->max_assoc_per_address);
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
		s->cfg.max_pending_addr = cfg->max_pending_per_address;
		s->cfg.max_assoc_addr = cfg->max_assoc_per_address;
		/* every half-open connection is a descriptor: leave at least
		 * half of them to the spool, the workers and the rest */
		struct rlimit rl;
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
		    rl.rlim_cur / 2 < MAX_PENDING)
			s->cfg.max_pending = rl.rlim_cur / 2 < 16 ? 16 : (size_t)rl.rlim_cur / 2;
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
		if (cfg->nproxy_from && !cfg->proxy_from) {
			delete s;
			return usv_seterr(errbuf, errlen, -EINVAL, "proxy_from: missing list");
		}
		for (size_t i = 0; i < cfg->nproxy_from; i++) {
			usv_cidr4 c;
			char w[160];
			if (usv_cidr4_parse(cfg->proxy_from[i] ? cfg->proxy_from[i] : "", &c, w,
			                    sizeof w) < 0) {
				delete s;
				return usv_seterr(errbuf, errlen, -EINVAL, "proxy_from[%zu]: %s", i,
				                  w);
			}
			s->cfg.proxy_from.push_back(c);
		}
		s->cfg.min_free = cfg->min_free_bytes;
		s->cfg.tls = copy_tls(cfg->tls);
		if (s->cfg.tls.port > 0) {
			std::string why;
			s->tls_layer = make_server_tls(s->cfg.tls, why);
			if (!s->tls_layer) {
				delete s;
				return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "DICOM TLS: %s",
				                  why.c_str());
			}
		}
		if (cbs)
			s->cbs = *cbs;
		s->sink = *sink;

		int rc = build_shared_config(s, errbuf, errlen);
		if (rc) {
			delete s;
			return rc;
		}
		if (s->cfg.port > 0) {
			s->listen_fd = open_listen(s->cfg, s->cfg.port, errbuf, errlen);
			if (s->listen_fd < 0) {
				rc = s->listen_fd;
				s->listen_fd = -1;
				delete s;
				return rc;
			}
		}
		if (s->cfg.tls.port > 0) {
			s->tls_fd = open_listen(s->cfg, s->cfg.tls.port, errbuf, errlen);
			if (s->tls_fd < 0) {
				rc = s->tls_fd;
				s->tls_fd = -1;
				stop_threads(s);
				delete s;
				return rc;
			}
		}
		/* parsing is as lenient as the decoder's (dcm_image.cpp):
		 * dcmIgnoreParsingErrors; peers are named by address, never by a
		 * reverse DNS lookup: dcmDisableGethostbyaddr. Both are set once
		 * by usv_dcm_global_init(). */
		OFCondition c = EC_Normal;
		if (s->listen_fd >= 0)
			c = init_network(s->listen_fd, s->cfg.port, cfg->acse_timeout_s, &s->net);
		if (c.good() && s->tls_fd >= 0) {
			c = init_network(s->tls_fd, s->cfg.tls.port, cfg->acse_timeout_s,
			                 &s->tls_net);
			/* ours: the layer outlives the network (dropped in stop_threads) */
			if (c.good())
				c = ASC_setTransportLayer(s->tls_net, &s->tls_ready, 0);
		}
		if (c.bad()) {
			stop_threads(s);
			delete s;
			return usv_seterr(errbuf, errlen, -USV_ERR_DICOM, "DICOM network: %s",
			                  c.text());
		}
		for (int i = 0; i < s->cfg.max_assoc; i++)
			s->workers.emplace_back(worker_main, s);
		{
			/* serve max_assoc associations from the first one on: an
			 * association arriving before every worker waits for work
			 * would be refused as "all workers busy" */
			std::unique_lock<std::mutex> lk(s->mu);
			s->ready.wait(lk, [s] { return s->idle == s->cfg.max_assoc; });
		}
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
	st->halfopen_evicted = s->n_evicted;
	st->halfopen_timeout = s->n_halfopen_timeout;
	st->not_dicom = s->n_not_dicom;
	st->assoc_rejected_addr = s->n_rej_addr;
	st->halfopen_active = s->n_halfopen;
	st->tls_handshake_failed = s->n_tls_fail;
	st->proxy_refused = s->n_proxy_refused;
	st->draining = s->draining ? 1 : 0;
}

extern "C" int usv_scp_drain(usv_scp *s)
{
	if (!s)
		return -EINVAL;
	if (s->draining.exchange(true))
		return 0;
	/* Linux: a listening socket shut down stops listening (queued and new
	 * connections are reset); it is closed in stop_threads as before. The
	 * accept thread closes its half-open connections. */
	if (s->listen_fd >= 0)
		shutdown(s->listen_fd, SHUT_RDWR);
	if (s->tls_fd >= 0)
		shutdown(s->tls_fd, SHUT_RDWR);
	return 0;
}

extern "C" int usv_scp_in_progress(usv_scp *s)
{
	if (!s)
		return 0;
	std::lock_guard<std::mutex> lk(s->mu);
	return (int)s->live.size();
}

extern "C" int usv_scp_abort(usv_scp *s)
{
	if (!s)
		return 0;
	std::lock_guard<std::mutex> lk(s->mu);
	for (int fd : s->live)
		shutdown(fd, SHUT_RDWR);
	return (int)s->live.size();
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

extern "C" int usv_scp_set_tls(usv_scp *scp, const usv_scp_tls *tls, char *errbuf, size_t errlen)
{
	try {
		if (!scp || !tls || scp->cfg.tls.port <= 0)
			return usv_seterr(errbuf, errlen, -EINVAL,
			                  "DICOM TLS: no TLS port running");
		if (tls->port != scp->cfg.tls.port)
			return usv_seterr(
			    errbuf, errlen, -EINVAL,
			    "DICOM TLS: port %d cannot change to %d without a restart",
			    scp->cfg.tls.port, tls->port);
		std::string why;
		std::shared_ptr<DcmTLSTransportLayer> l = make_server_tls(copy_tls(*tls), why);
		if (!l)
			return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "DICOM TLS: %s",
			                  why.c_str());
		/* the old layer goes when its last half-open handshake does */
		std::lock_guard<std::mutex> lk(scp->tls_mu);
		scp->tls_layer.swap(l);
		return 0;
	} catch (const std::bad_alloc &) {
		return usv_seterr(errbuf, errlen, -ENOMEM, "DICOM TLS: out of memory");
	} catch (...) {
		return usv_seterr(errbuf, errlen, -USV_ERR_DICOM, "DICOM TLS: reload failed");
	}
}

extern "C" int usv_scp_tls_info(usv_scp *scp, char *buf, size_t len)
{
	try {
		if (!scp || scp->cfg.tls.port <= 0)
			return usv_seterr(buf, len, -EINVAL, "no TLS port");
		std::shared_ptr<DcmTLSTransportLayer> l;
		{
			std::lock_guard<std::mutex> lk(scp->tls_mu);
			l = scp->tls_layer;
		}
		X509 *x = l ? SSL_CTX_get0_certificate(l->getNativeHandle()) : nullptr;
		snprintf(buf, len, "%s", cert_line(x, false).c_str());
		return 0;
	} catch (...) {
		return usv_seterr(buf, len, -USV_ERR_DICOM, "TLS information unavailable");
	}
}

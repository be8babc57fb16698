/*
 * NAME
 *	dcm_qr.cpp - Study Root C-FIND, C-GET and C-MOVE (SCU side)
 *
 * DESCRIPTION
 *	See usv/dcm_qr.h for the contracts. One DcmSCU subclass object per
 *	call; nothing is shared between calls.
 *
 *	C-FIND: FindSCU::handleFINDResponse() collects pending responses and
 *	stops at the cap (the association is then aborted).
 *
 *	C-GET: GetSCU replaces DcmSCU::handleCGETSession(). DCMTK's own loop
 *	ends the session on the first C-STORE it cannot store (so one bad
 *	instance would lose the rest) and, in its streaming mode, builds the
 *	file name from the unchecked Affected SOP Instance UID. Ours streams
 *	each instance into a mkstemp() name through
 *	DcmSCU::handleSTORERequestFile() (DIMSE_receiveDataSetInFile: memory
 *	stays small whatever the size, meta header with the network syntax),
 *	checks and renames it (Sink below), answers, and keeps the counts of
 *	every C-GET response, so that a peer that goes away mid-transfer is
 *	reported with what had arrived.
 *
 *	C-MOVE: the receiving side is a small accept loop of our own on a
 *	thread (ASC_receiveAssociation, non-blocking with a 1 s poll, a stop
 *	flag) handing each association to a fresh MoveSCP (DcmThreadSCP,
 *	run()); DcmSCP::listen()/openListenPort() are not used because they
 *	change DCMTK's process-wide dcmEnableAutomaticInputDataCorrection
 *	(dcmtk.md 2.2 for why DcmStorageSCP is not used either). The C-MOVE
 *	itself is DcmSCU::sendMOVERequest() with handleMOVEResponse()
 *	recording the counts.
 *
 *	Association and exchange failures are mapped as in usv/dcm_qr.h
 *	ERRORS; DCMTK's own texts go into err.
 */
#include "usv/dcm_qr.h"
#include "usv/dcm_ae.h"
#include "usv/err.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmnet/assoc.h>
#include <dcmtk/dcmnet/dimse.h>
#include <dcmtk/dcmnet/diutil.h>
#include <dcmtk/dcmnet/scpthrd.h>
#include <dcmtk/dcmnet/scu.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <memory>
#include <thread>
#include <vector>

namespace
{

const Uint32 kMaxPDU = 65536;

bool valid_ae(const char *ae)
{
	return usv_dcm_ae_check(ae, nullptr, 0) == 0;
}

std::string trim(const char *s)
{
	std::string t(s ? s : "");
	size_t b = t.find_first_not_of(' ');
	if (b == std::string::npos)
		return "";
	size_t e = t.find_last_not_of(' ');
	return t.substr(b, e - b + 1);
}

/* printable, bounded copy of peer-supplied text for messages */
std::string clean(const char *s, size_t max = 64)
{
	std::string o;
	for (size_t i = 0; s && s[i] && i < max; i++) {
		unsigned char c = (unsigned char)s[i];
		o += (c < 0x20 || c > 0x7E) ? '?' : (char)c;
	}
	return o;
}

bool uid_valid(const char *s)
{
	if (!s)
		return false;
	size_t n = strlen(s);
	if (n < 1 || n > 64 || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '.') {
			if (s[i + 1] == '.')
				return false;
		} else if (c < '0' || c > '9') {
			return false;
		}
	}
	return true;
}

int check_peer(const usv_qr_peer *p, std::string &why)
{
	if (!p) {
		why = "no peer";
		return -EINVAL;
	}
	if (!p->host || !*p->host || strlen(p->host) > 57) {
		why = "peer host missing or longer than 57 characters";
		return -EINVAL;
	}
	if (p->port < 1 || p->port > 65535) {
		why = "peer port outside 1..65535";
		return -EINVAL;
	}
	if (!valid_ae(p->called_ae) || !valid_ae(p->calling_ae)) {
		why = "invalid called or calling AE title";
		return -EINVAL;
	}
	if (p->timeout_s < 0 || p->timeout_s > 3600) {
		why = "timeout outside 0..3600 s";
		return -EINVAL;
	}
	return 0;
}

std::string where(const usv_qr_peer *p)
{
	return trim(p->called_ae) + "@" + p->host + ":" + std::to_string(p->port);
}

Uint32 timeout_of(const usv_qr_peer *p)
{
	return p->timeout_s > 0 ? (Uint32)p->timeout_s : 30;
}

void configure(DcmSCU &scu, const usv_qr_peer *p)
{
	scu.setAETitle(p->calling_ae);
	scu.setPeerAETitle(p->called_ae);
	scu.setPeerHostName(p->host);
	scu.setPeerPort((Uint16)p->port);
	scu.setACSETimeout(timeout_of(p));
	scu.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
	scu.setDIMSETimeout(timeout_of(p));
	scu.setMaxReceivePDULength(kMaxPDU);
	scu.setVerbosePCMode(OFFalse);
}

/* Association set-up failure: the code and a text. */
int assoc_error(const usv_qr_peer *p, const OFCondition &c, const char *service, std::string &why)
{
	if (c == DUL_ASSOCIATIONREJECTED) {
		why = "association rejected by " + where(p);
		return -EACCES;
	}
	if (c == DUL_READTIMEOUT) {
		why = where(p) + " accepted the connection but did not answer the association "
		                 "request in time";
		return -ETIMEDOUT;
	}
	if (c == NET_EC_NoAcceptablePresentationContexts) {
		why = where(p) + " does not support " + service +
		      " (no presentation context accepted)";
		return -USV_ERR_UNSUPPORTED;
	}
	why = "cannot connect to " + where(p) + ": " + c.text();
	return -ECONNREFUSED;
}

/* Failure during the exchange. */
int exchange_error(const OFCondition &c)
{
	if (c == DIMSE_NODATAAVAILABLE || c == DUL_READTIMEOUT)
		return -ETIMEDOUT;
	return -ECONNRESET;
}

bool is_pending(Uint16 st)
{
	return st == 0xFF00 || st == 0xFF01;
}
bool is_warning(Uint16 st)
{
	return st == 0x0001 || (st & 0xF000) == 0xB000;
}

std::string status_text(Uint16 st, const char *(*name)(Uint16))
{
	char b[160];
	snprintf(b, sizeof b, "status 0x%04X (%s)", st, name(st));
	return b;
}

const char *get_name(Uint16 st)
{
	return DU_cgetStatusString(st);
}
const char *move_name(Uint16 st)
{
	return DU_cmoveStatusString(st);
}
const char *find_name(Uint16 st)
{
	return DU_cfindStatusString(st);
}

/* The storage classes and transfer syntaxes we take in (dcm_scp.cpp's set). */
const char *const kStorageClasses[] = {
    UID_UltrasoundImageStorage,
    UID_UltrasoundMultiframeImageStorage,
    UID_RETIRED_UltrasoundImageStorage,
    UID_RETIRED_UltrasoundMultiframeImageStorage,
    UID_SecondaryCaptureImageStorage,
    UID_MultiframeGrayscaleByteSecondaryCaptureImageStorage,
    UID_MultiframeGrayscaleWordSecondaryCaptureImageStorage,
    UID_MultiframeTrueColorSecondaryCaptureImageStorage,
};
const char *const kSyntaxes[] = {
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

OFList<OFString> uncompressed()
{
	OFList<OFString> x;
	x.push_back(UID_LittleEndianExplicitTransferSyntax);
	x.push_back(UID_BigEndianExplicitTransferSyntax);
	x.push_back(UID_LittleEndianImplicitTransferSyntax);
	return x;
}

DcmDataset *study_keys(const char *study_uid)
{
	DcmDataset *ds = new DcmDataset;
	ds->putAndInsertString(DCM_QueryRetrieveLevel, "STUDY");
	ds->putAndInsertString(DCM_StudyInstanceUID, study_uid);
	return ds;
}

/* ---- received instances ------------------------------------------------ */

const Uint16 ST_OK = 0x0000, ST_REFUSED = STATUS_STORE_Refused_OutOfResources,
             ST_MISMATCH = STATUS_STORE_Error_DataSetDoesNotMatchSOPClass,
             ST_CANNOT = STATUS_STORE_Error_CannotUnderstand;

/* Where received instances go: dir/<uid>.dcm through a temporary name. */
struct Sink {
	std::string dir, study;
	usv_qr_file_cb cb = nullptr;
	void *ud = nullptr;
	size_t n_ok = 0, n_refused = 0, n_seen = 0;
	bool cancelled = false, limit = false;
	std::string last_error;

	/* A fresh temporary file for uid (valid); "" on failure. */
	std::string tmp_for(const char *uid)
	{
		std::string t = dir + "/." + uid + ".XXXXXX.part";
		std::vector<char> b(t.begin(), t.end());
		b.push_back(0);
		int fd = mkstemps(b.data(), 5);
		if (fd < 0) {
			last_error =
			    std::string("cannot create a file in ") + dir + ": " + strerror(errno);
			return "";
		}
		close(fd);
		return std::string(b.data());
	}

	/* After the data set is in tmp: check, fsync, rename, cb. */
	Uint16 commit(const std::string &tmp, const char *uid)
	{
		{
			DcmFileFormat ff;
			OFCondition c = ff.loadFile(tmp.c_str(), EXS_Unknown, EGL_noChange, 4096);
			if (c.bad()) {
				unlink(tmp.c_str());
				last_error = std::string("unreadable instance: ") + c.text();
				n_refused++;
				return ST_CANNOT;
			}
			OFString inst, st;
			ff.getDataset()->findAndGetOFString(DCM_SOPInstanceUID, inst);
			ff.getDataset()->findAndGetOFString(DCM_StudyInstanceUID, st);
			if (inst != OFString(uid) || st != OFString(study.c_str())) {
				unlink(tmp.c_str());
				last_error = "instance " + clean(uid) +
				             (inst != OFString(uid)
				                  ? ": SOP Instance UID differs from the request"
				                  : ": belongs to another study");
				n_refused++;
				return ST_MISMATCH;
			}
		}
		int fd = open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			(void)fsync(fd);
			close(fd);
		}
		std::string fin = dir + "/" + uid + ".dcm";
		if (rename(tmp.c_str(), fin.c_str())) {
			last_error = "rename to " + fin + ": " + strerror(errno);
			unlink(tmp.c_str());
			n_refused++;
			return ST_REFUSED;
		}
		int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			(void)fsync(dfd);
			close(dfd);
		}
		n_ok++;
		if (cb && cb(fin.c_str(), ud) != 0)
			cancelled = true;
		return ST_OK;
	}

	/* Before receiving: 0 to go on, else the status to refuse with. */
	Uint16 admit(const char *uid)
	{
		n_seen++;
		if (n_seen > USV_QR_MAX_INSTANCES) {
			limit = true;
			n_refused++;
			return ST_REFUSED;
		}
		if (!uid_valid(uid)) {
			last_error = "instance with an invalid SOP Instance UID refused";
			n_refused++;
			return ST_CANNOT;
		}
		return ST_OK;
	}
};

/* ---- C-FIND --------------------------------------------------------------- */

class FindSCU : public DcmSCU
{
      public:
	std::vector<usv_qr_study> found;
	size_t max = 0;
	bool over = false, final_seen = false;
	Uint16 final_status = 0;

      protected:
	OFCondition handleFINDResponse(const T_ASC_PresentationContextID presID, QRResponse *r,
	                               OFBool &wait) override
	{
		wait = OFFalse;
		if (!r)
			return DIMSE_NULLKEY;
		if (!is_pending(r->m_status)) {
			final_seen = true;
			final_status = r->m_status;
			return EC_Normal;
		}
		wait = OFTrue;
		if (!r->m_dataset)
			return EC_Normal;
		OFString uid, date, mods, ninst;
		r->m_dataset->findAndGetOFString(DCM_StudyInstanceUID, uid);
		if (!uid_valid(uid.c_str()))
			return EC_Normal;
		if (found.size() >= max) {
			over = true;
			wait = OFFalse;
			return EC_Normal;
		}
		usv_qr_study s;
		memset(&s, 0, sizeof s);
		snprintf(s.study_uid, sizeof s.study_uid, "%s", uid.c_str());
		r->m_dataset->findAndGetOFString(DCM_StudyDate, date);
		if (date.size() == 8 && date.find_first_not_of("0123456789") == OFString_npos)
			snprintf(s.study_date, sizeof s.study_date, "%s", date.c_str());
		r->m_dataset->findAndGetOFStringArray(DCM_ModalitiesInStudy, mods);
		std::string m = clean(mods.c_str(), sizeof s.modalities - 1);
		snprintf(s.modalities, sizeof s.modalities, "%s", m.c_str());
		s.n_instances = -1;
		Sint32 ni = 0;
		if (r->m_dataset->findAndGetSint32(DCM_NumberOfStudyRelatedInstances, ni).good() &&
		    ni >= 0)
			s.n_instances = (int)ni;
		found.push_back(s);
		return EC_Normal;
	}
};

bool date_ok(const char *d)
{
	auto d8 = [](const char *s, size_t n) {
		if (n != 8)
			return false;
		for (size_t i = 0; i < 8; i++)
			if (s[i] < '0' || s[i] > '9')
				return false;
		return true;
	};
	size_t n = strlen(d);
	if (n == 0)
		return true;
	const char *dash = strchr(d, '-');
	if (!dash)
		return d8(d, n);
	if (strchr(dash + 1, '-'))
		return false;
	size_t a = (size_t)(dash - d), b = n - a - 1;
	if (a == 0 && b == 0)
		return false;
	return (a == 0 || d8(d, a)) && (b == 0 || d8(dash + 1, b));
}

bool modality_ok(const char *m)
{
	size_t n = strlen(m);
	if (n > 16)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = m[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ' ' || c == '_'))
			return false;
	}
	return true;
}

/* ---- C-GET ---------------------------------------------------------------- */

class GetSCU : public DcmSCU
{
      public:
	Sink *sink = nullptr;
	bool final_seen = false, broken = false;
	Uint16 final_status = 0;
	Uint16 completed = 0, failed = 0, warning = 0, remaining = 0;
	bool counts = false;
	OFCondition fail_cond;

      protected:
	OFCondition handleCGETSession(const T_ASC_PresentationContextID, DcmDataset *,
	                              OFList<RetrieveResponse *> *) override
	{
		for (;;) {
			T_DIMSE_Message msg;
			memset(&msg, 0, sizeof msg);
			DcmDataset *detail = nullptr;
			T_ASC_PresentationContextID pcid = 0;
			OFCondition c = receiveDIMSECommand(&pcid, &msg, &detail, nullptr);
			delete detail;
			if (c.bad()) {
				broken = true;
				fail_cond = c;
				return c;
			}
			if (msg.CommandField == DIMSE_C_GET_RSP) {
				const T_DIMSE_C_GetRSP &r = msg.msg.CGetRSP;
				if (r.DataSetType != DIMSE_DATASET_NULL) {
					DcmDataset *ds = nullptr;
					c = receiveDIMSEDataset(&pcid, &ds);
					delete ds;
					if (c.bad()) {
						broken = true;
						fail_cond = c;
						return c;
					}
				}
				if (r.opts & O_GET_NUMBEROFCOMPLETEDSUBOPERATIONS) {
					completed = r.NumberOfCompletedSubOperations;
					counts = true;
				}
				if (r.opts & O_GET_NUMBEROFFAILEDSUBOPERATIONS) {
					failed = r.NumberOfFailedSubOperations;
					counts = true;
				}
				if (r.opts & O_GET_NUMBEROFWARNINGSUBOPERATIONS)
					warning = r.NumberOfWarningSubOperations;
				if (r.opts & O_GET_NUMBEROFREMAININGSUBOPERATIONS)
					remaining = r.NumberOfRemainingSubOperations;
				if (!is_pending(r.DimseStatus)) {
					final_seen = true;
					final_status = r.DimseStatus;
					return EC_Normal;
				}
				continue;
			}
			if (msg.CommandField == DIMSE_C_STORE_RQ) {
				c = store(pcid, msg.msg.CStoreRQ);
				if (c.bad()) {
					broken = true;
					fail_cond = c;
					return c;
				}
				if (sink->cancelled || sink->limit)
					return EC_Normal;
				continue;
			}
			broken = true;
			fail_cond = DIMSE_BADCOMMANDTYPE;
			return DIMSE_BADCOMMANDTYPE;
		}
	}

      private:
	OFCondition store(T_ASC_PresentationContextID pcid, T_DIMSE_C_StoreRQ &rq)
	{
		char uid[sizeof rq.AffectedSOPInstanceUID + 1];
		memcpy(uid, rq.AffectedSOPInstanceUID, sizeof rq.AffectedSOPInstanceUID);
		uid[sizeof rq.AffectedSOPInstanceUID] = 0;
		Uint16 st = sink->admit(uid);
		std::string tmp;
		if (st == ST_OK) {
			tmp = sink->tmp_for(uid);
			if (tmp.empty())
				st = ST_REFUSED, sink->n_refused++;
		}
		if (st != ST_OK) {
			OFCondition c = ignoreSTORERequest(pcid, rq);
			if (c.bad())
				return c;
			return sendSTOREResponse(pcid, st, rq);
		}
		OFCondition c = handleSTORERequestFile(&pcid, OFString(tmp.c_str()), &rq);
		if (c.bad()) {
			unlink(tmp.c_str());
			return c;
		}
		st = sink->commit(tmp, uid);
		return sendSTOREResponse(pcid, st, rq);
	}
};

/* ---- C-MOVE --------------------------------------------------------------- */

class MoveSCU : public DcmSCU
{
      public:
	bool final_seen = false;
	Uint16 final_status = 0;
	Uint16 completed = 0, failed = 0;
	bool counts = false;

      protected:
	OFCondition handleMOVEResponse(const T_ASC_PresentationContextID, RetrieveResponse *r,
	                               OFBool &wait) override
	{
		wait = OFFalse;
		if (!r)
			return DIMSE_NULLKEY;
		if (r->m_numberOfCompletedSubops || r->m_numberOfFailedSubops ||
		    !is_pending(r->m_status)) {
			completed = r->m_numberOfCompletedSubops;
			failed = r->m_numberOfFailedSubops;
			counts = true;
		}
		if (is_pending(r->m_status)) {
			wait = OFTrue;
			return EC_Normal;
		}
		final_seen = true;
		final_status = r->m_status;
		return EC_Normal;
	}
};

/* One receiving association of a C-MOVE. */
class MoveSCP : public DcmThreadSCP
{
      public:
	MoveSCP(Sink *s, const std::string &ae) : sink_(s), ae_(ae)
	{
	}
	bool stop_now = false;

      protected:
	OFBool checkCalledAETitleAccepted(const OFString &called) override
	{
		return trim(called.c_str()) == ae_ ? OFTrue : OFFalse;
	}
	OFCondition handleIncomingCommand(T_DIMSE_Message *msg,
	                                  const DcmPresentationContextInfo &pc) override
	{
		if (msg->CommandField == DIMSE_C_ECHO_RQ)
			return handleECHORequest(msg->msg.CEchoRQ, pc.presentationContextID);
		if (msg->CommandField != DIMSE_C_STORE_RQ)
			return DcmThreadSCP::handleIncomingCommand(msg, pc);
		T_DIMSE_C_StoreRQ &rq = msg->msg.CStoreRQ;
		const T_ASC_PresentationContextID pid = pc.presentationContextID;
		char uid[sizeof rq.AffectedSOPInstanceUID + 1];
		memcpy(uid, rq.AffectedSOPInstanceUID, sizeof rq.AffectedSOPInstanceUID);
		uid[sizeof rq.AffectedSOPInstanceUID] = 0;
		Uint16 st = sink_->cancelled ? ST_REFUSED : sink_->admit(uid);
		std::string tmp;
		if (st == ST_OK) {
			tmp = sink_->tmp_for(uid);
			if (tmp.empty())
				st = ST_REFUSED, sink_->n_refused++;
		}
		if (st != ST_OK) {
			/* a path that cannot be created: DCMTK drains the data set */
			OFCondition c =
			    receiveSTORERequest(rq, pid, OFString("/dev/null/usv-refused"));
			if (c.bad() && c != DIMSE_OUTOFRESOURCES)
				return c;
			return sendSTOREResponse(pid, rq, st);
		}
		OFCondition c = receiveSTORERequest(rq, pid, OFString(tmp.c_str()));
		if (c == DIMSE_OUTOFRESOURCES) {
			unlink(tmp.c_str());
			sink_->n_refused++;
			return sendSTOREResponse(pid, rq, ST_REFUSED);
		}
		if (c.bad()) {
			unlink(tmp.c_str());
			return c;
		}
		st = sink_->commit(tmp, uid);
		return sendSTOREResponse(pid, rq, st);
	}

      private:
	Sink *sink_;
	std::string ae_;
};

int dir_ok(const char *dir, std::string &why)
{
	struct stat sb;
	if (!dir || !*dir || stat(dir, &sb) || !S_ISDIR(sb.st_mode)) {
		why = std::string(dir ? dir : "(null)") + ": not a folder";
		return -EINVAL;
	}
	if (access(dir, W_OK | X_OK)) {
		why = std::string(dir) + ": not writable";
		return -EINVAL;
	}
	return 0;
}

void set_counts(size_t *n_ok, size_t *n_failed, const Sink &s, bool counts, Uint16 failed)
{
	if (n_ok)
		*n_ok = s.n_ok;
	if (n_failed)
		*n_failed = counts ? (size_t)failed : s.n_refused;
}

/* The outcome of a retrieve (C-GET or C-MOVE) after the exchange. */
int retrieve_result(const usv_qr_peer *p, const char *what, const Sink &sink, bool broken,
                    const OFCondition &fail, bool final_seen, Uint16 final_status, bool counts,
                    Uint16 completed, Uint16 failed, const char *(*name)(Uint16), std::string &why)
{
	std::string arrived =
	    std::to_string(sink.n_ok) + " instance" + (sink.n_ok == 1 ? "" : "s") + " arrived";
	if (sink.cancelled) {
		why = std::string(what) + " from " + where(p) + " cancelled by the caller after " +
		      arrived;
		return -ECANCELED;
	}
	if (sink.limit) {
		why = std::string(what) + " from " + where(p) + ": more than " +
		      std::to_string(USV_QR_MAX_INSTANCES) + " instances; " + arrived;
		return -USV_ERR_LIMIT;
	}
	if (broken || !final_seen) {
		int rc = exchange_error(fail);
		why = std::string("peer ") + where(p) +
		      (rc == -ETIMEDOUT ? " stopped answering" : " went away") + " during " + what +
		      " after " + arrived + " (" + (broken ? fail.text() : "no final response") +
		      ")";
		return rc;
	}
	if (is_warning(final_status) || final_status == 0) {
		if (final_status == 0 && sink.n_ok == 0 &&
		    (!counts || (completed == 0 && failed == 0))) {
			why = std::string(what) + " from " + where(p) +
			      ": no instances (study not found on the peer)";
			return -ENOENT;
		}
		return 0;
	}
	why = std::string(what) + " from " + where(p) +
	      " failed: " + status_text(final_status, name) + "; " + arrived +
	      (sink.last_error.empty() ? "" : "; last refusal: " + sink.last_error);
	return -USV_ERR_DICOM;
}

/* After a failed retrieve with nothing arrived: does the peer know the
 * study? 1 yes, 0 no, -1 cannot tell. */
int study_known(const usv_qr_peer *p, const char *study_uid)
{
	FindSCU scu;
	configure(scu, p);
	scu.max = 1;
	scu.addPresentationContext(UID_FINDStudyRootQueryRetrieveInformationModel, uncompressed());
	if (scu.initNetwork().bad() || scu.negotiateAssociation().bad())
		return -1;
	T_ASC_PresentationContextID pc =
	    scu.findPresentationContextID(UID_FINDStudyRootQueryRetrieveInformationModel, "");
	if (!pc) {
		scu.releaseAssociation();
		return -1;
	}
	DcmDataset keys;
	keys.putAndInsertString(DCM_QueryRetrieveLevel, "STUDY");
	keys.putAndInsertString(DCM_StudyInstanceUID, study_uid);
	OFCondition c = scu.sendFINDRequest(pc, &keys, nullptr);
	if (scu.over) {
		scu.abortAssociation();
		return 1;
	}
	if (c.bad() || !scu.final_seen) {
		scu.abortAssociation();
		return -1;
	}
	scu.releaseAssociation();
	if (scu.final_status != 0)
		return -1;
	return scu.found.empty() ? 0 : 1;
}

/* A failed retrieve with nothing arrived for a study the peer does not
 * know becomes -ENOENT. */
int unknown_study(const usv_qr_peer *p, const char *what, const char *study_uid, int rc,
                  const Sink &sink, std::string &why)
{
	if (rc != -USV_ERR_DICOM || sink.n_ok || sink.n_refused || study_known(p, study_uid) != 0)
		return rc;
	why = std::string(what) + " from " + where(p) + ": study " + study_uid +
	      " not found on the peer (" + why.substr(why.find("failed: ") + 8) + ")";
	return -ENOENT;
}

} // namespace

extern "C" int usv_qr_uid_valid(const char *s)
{
	return uid_valid(s) ? 1 : 0;
}

extern "C" int usv_qr_find_studies(const usv_qr_peer *p, const char *date_range,
                                   const char *modality, size_t max_results, usv_qr_study **out,
                                   size_t *n, char *err, size_t errlen)
{
	try {
		std::string why;
		int rc = check_peer(p, why);
		if (rc)
			return usv_seterr(err, errlen, rc, "C-FIND: %s", why.c_str());
		if (!out || !n || max_results < 1 || max_results > USV_QR_MAX_STUDIES)
			return usv_seterr(err, errlen, -EINVAL, "C-FIND: bad arguments");
		if (!date_range)
			date_range = "";
		if (!modality)
			modality = "";
		if (!date_ok(date_range))
			return usv_seterr(err, errlen, -EINVAL,
			                  "C-FIND: date range '%s' is not YYYYMMDD[-YYYYMMDD]",
			                  clean(date_range).c_str());
		if (!modality_ok(modality))
			return usv_seterr(err, errlen, -EINVAL, "C-FIND: bad modality '%s'",
			                  clean(modality).c_str());
		FindSCU scu;
		configure(scu, p);
		scu.max = max_results;
		scu.addPresentationContext(UID_FINDStudyRootQueryRetrieveInformationModel,
		                           uncompressed());
		OFCondition c = scu.initNetwork();
		if (c.bad())
			return usv_seterr(err, errlen, -USV_ERR_DICOM, "C-FIND: network set-up: %s",
			                  c.text());
		c = scu.negotiateAssociation();
		if (c.bad()) {
			rc = assoc_error(p, c, "C-FIND (Study Root)", why);
			return usv_seterr(err, errlen, rc, "C-FIND: %s", why.c_str());
		}
		T_ASC_PresentationContextID pc = scu.findPresentationContextID(
		    UID_FINDStudyRootQueryRetrieveInformationModel, "");
		if (!pc) {
			scu.releaseAssociation();
			return usv_seterr(err, errlen, -USV_ERR_UNSUPPORTED,
			                  "C-FIND: %s does not support Study Root C-FIND",
			                  where(p).c_str());
		}
		DcmDataset keys;
		keys.putAndInsertString(DCM_QueryRetrieveLevel, "STUDY");
		keys.putAndInsertString(DCM_StudyInstanceUID, "");
		keys.putAndInsertString(DCM_StudyDate, date_range);
		keys.putAndInsertString(DCM_ModalitiesInStudy, modality);
		keys.putAndInsertString(DCM_NumberOfStudyRelatedInstances, "");
		c = scu.sendFINDRequest(pc, &keys, nullptr);
		if (scu.over) {
			scu.abortAssociation();
			return usv_seterr(err, errlen, -USV_ERR_LIMIT,
			                  "C-FIND at %s: more than %zu studies match",
			                  where(p).c_str(), max_results);
		}
		if (c.bad() || !scu.final_seen) {
			rc = exchange_error(c);
			scu.abortAssociation();
			return usv_seterr(
			    err, errlen, rc, "C-FIND at %s: %s after %zu results: %s",
			    where(p).c_str(), rc == -ETIMEDOUT ? "no answer" : "peer went away",
			    scu.found.size(), c.bad() ? c.text() : "no final response");
		}
		scu.releaseAssociation();
		if (scu.final_status != 0 && !is_warning(scu.final_status))
			return usv_seterr(err, errlen, -USV_ERR_DICOM, "C-FIND at %s failed: %s",
			                  where(p).c_str(),
			                  status_text(scu.final_status, find_name).c_str());
		usv_qr_study *arr = nullptr;
		if (!scu.found.empty()) {
			arr = (usv_qr_study *)malloc(scu.found.size() * sizeof *arr);
			if (!arr)
				return usv_seterr(err, errlen, -ENOMEM, "C-FIND: out of memory");
			memcpy(arr, scu.found.data(), scu.found.size() * sizeof *arr);
		}
		*out = arr;
		*n = scu.found.size();
		return 0;
	} catch (const std::bad_alloc &) {
		return usv_seterr(err, errlen, -ENOMEM, "C-FIND: out of memory");
	} catch (...) {
		return usv_seterr(err, errlen, -USV_ERR_DICOM, "C-FIND: unexpected failure");
	}
}

extern "C" int usv_qr_get_study(const usv_qr_peer *p, const char *study_uid, const char *dir,
                                usv_qr_file_cb cb, void *ud, size_t *n_ok, size_t *n_failed,
                                char *err, size_t errlen)
{
	if (n_ok)
		*n_ok = 0;
	if (n_failed)
		*n_failed = 0;
	try {
		std::string why;
		int rc = check_peer(p, why);
		if (!rc && !uid_valid(study_uid))
			rc = -EINVAL, why = "study UID is not a valid UID";
		if (!rc)
			rc = dir_ok(dir, why);
		if (rc)
			return usv_seterr(err, errlen, rc, "C-GET: %s", why.c_str());
		Sink sink;
		sink.dir = dir;
		sink.study = study_uid;
		sink.cb = cb;
		sink.ud = ud;
		GetSCU scu;
		scu.sink = &sink;
		configure(scu, p);
		scu.setStorageMode(DCMSCU_STORAGE_BIT_PRESERVING);
		scu.addPresentationContext(UID_GETStudyRootQueryRetrieveInformationModel,
		                           uncompressed());
		for (const char *cls : kStorageClasses)
			for (const char *ts : kSyntaxes) {
				OFList<OFString> one;
				one.push_back(ts);
				scu.addPresentationContext(cls, one, ASC_SC_ROLE_SCP);
			}
		OFCondition c = scu.initNetwork();
		if (c.bad())
			return usv_seterr(err, errlen, -USV_ERR_DICOM, "C-GET: network set-up: %s",
			                  c.text());
		c = scu.negotiateAssociation();
		if (c.bad()) {
			rc = assoc_error(p, c, "C-GET (Study Root)", why);
			return usv_seterr(err, errlen, rc, "C-GET: %s", why.c_str());
		}
		T_ASC_PresentationContextID pc = scu.findPresentationContextID(
		    UID_GETStudyRootQueryRetrieveInformationModel, "");
		if (!pc) {
			scu.releaseAssociation();
			return usv_seterr(err, errlen, -USV_ERR_UNSUPPORTED,
			                  "C-GET: %s does not support Study Root C-GET",
			                  where(p).c_str());
		}
		std::unique_ptr<DcmDataset> keys(study_keys(study_uid));
		c = scu.sendCGETRequest(pc, keys.get(), nullptr);
		if (c.bad() && !scu.broken) {
			scu.broken = true;
			scu.fail_cond = c;
		}
		rc = retrieve_result(p, "C-GET", sink, scu.broken, scu.fail_cond, scu.final_seen,
		                     scu.final_status, scu.counts, scu.completed, scu.failed,
		                     get_name, why);
		if (scu.isConnected()) {
			if (scu.broken || sink.cancelled || sink.limit || !scu.final_seen)
				scu.abortAssociation();
			else
				scu.releaseAssociation();
		}
		set_counts(n_ok, n_failed, sink, scu.counts, scu.failed);
		rc = unknown_study(p, "C-GET", study_uid, rc, sink, why);
		if (rc)
			return usv_seterr(err, errlen, rc, "%s", why.c_str());
		return 0;
	} catch (const std::bad_alloc &) {
		return usv_seterr(err, errlen, -ENOMEM, "C-GET: out of memory");
	} catch (...) {
		return usv_seterr(err, errlen, -USV_ERR_DICOM, "C-GET: unexpected failure");
	}
}

namespace
{

/* The temporary storage SCP of a C-MOVE: accept loop on a thread. */
struct Receiver {
	T_ASC_Network *net = nullptr;
	DcmSharedSCPConfig cfg;
	std::atomic<bool> stop{false};
	std::thread th;
	Sink *sink = nullptr;
	std::string ae;
	std::atomic<unsigned> associations{0};

	int open(int port, Uint32 tmo, std::string &why)
	{
		DcmSCPConfig &c = *cfg.operator->();
		c.setAETitle(ae.c_str());
		c.setRespondWithCalledAETitle(OFFalse);
		c.setMaxReceivePDULength(kMaxPDU);
		c.setACSETimeout(tmo);
		c.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
		c.setDIMSETimeout(tmo);
		c.setConnectionBlockingMode(DUL_NOBLOCK);
		c.setConnectionTimeout(1);
		OFList<OFString> xs;
		for (const char *t : kSyntaxes)
			xs.push_back(t);
		for (const char *cls : kStorageClasses) {
			OFCondition r = c.addPresentationContext(cls, xs);
			if (r.bad()) {
				why = std::string("storage context: ") + r.text();
				return -USV_ERR_DICOM;
			}
		}
		OFCondition r = c.addPresentationContext(UID_VerificationSOPClass, uncompressed());
		if (r.bad()) {
			why = std::string("verification context: ") + r.text();
			return -USV_ERR_DICOM;
		}
		r = ASC_initializeNetwork(NET_ACCEPTOR, port, (int)tmo, &net);
		if (r.bad()) {
			net = nullptr;
			why = "cannot listen on port " + std::to_string(port) + ": " + r.text();
			return -EADDRINUSE;
		}
		return 0;
	}

	void loop()
	{
		while (!stop.load()) {
			T_ASC_Association *a = nullptr;
			OFCondition c = ASC_receiveAssociation(net, &a, kMaxPDU, nullptr, nullptr,
			                                       OFFalse, DUL_NOBLOCK, 1);
			if (c.bad()) {
				if (a) {
					ASC_dropSCPAssociation(a);
					ASC_destroyAssociation(&a);
				}
				continue;
			}
			associations++;
			MoveSCP scp(sink, ae);
			scp.setSharedConfig(cfg);
			scp.run(a); /* the object drops and destroys a */
		}
	}

	~Receiver()
	{
		stop = true;
		if (th.joinable())
			th.join();
		if (net)
			ASC_dropNetwork(&net);
	}
};

} // namespace

extern "C" int usv_qr_move_study(const usv_qr_peer *p, const char *study_uid,
                                 const char *move_dest_ae, int listen_port, const char *dir,
                                 usv_qr_file_cb cb, void *ud, size_t *n_ok, size_t *n_failed,
                                 char *err, size_t errlen)
{
	if (n_ok)
		*n_ok = 0;
	if (n_failed)
		*n_failed = 0;
	try {
		std::string why;
		int rc = check_peer(p, why);
		if (!rc && !uid_valid(study_uid))
			rc = -EINVAL, why = "study UID is not a valid UID";
		if (!rc && !valid_ae(move_dest_ae))
			rc = -EINVAL, why = "invalid move destination AE title";
		if (!rc && (listen_port < 1 || listen_port > 65535))
			rc = -EINVAL, why = "listen port outside 1..65535";
		if (!rc)
			rc = dir_ok(dir, why);
		if (rc)
			return usv_seterr(err, errlen, rc, "C-MOVE: %s", why.c_str());
		Sink sink;
		sink.dir = dir;
		sink.study = study_uid;
		sink.cb = cb;
		sink.ud = ud;

		MoveSCU scu;
		configure(scu, p);
		scu.addPresentationContext(UID_MOVEStudyRootQueryRetrieveInformationModel,
		                           uncompressed());
		OFCondition c = scu.initNetwork();
		if (c.bad())
			return usv_seterr(err, errlen, -USV_ERR_DICOM, "C-MOVE: network set-up: %s",
			                  c.text());

		/* the receiver lives until the C-MOVE has ended (destructor joins) */
		std::unique_ptr<Receiver> rx(new Receiver);
		rx->sink = &sink;
		rx->ae = trim(move_dest_ae);
		rc = rx->open(listen_port, timeout_of(p), why);
		if (rc)
			return usv_seterr(err, errlen, rc, "C-MOVE: %s", why.c_str());
		Receiver *r = rx.get();
		rx->th = std::thread([r] { r->loop(); });

		c = scu.negotiateAssociation();
		if (c.bad()) {
			rx.reset();
			rc = assoc_error(p, c, "C-MOVE (Study Root)", why);
			return usv_seterr(err, errlen, rc, "C-MOVE: %s", why.c_str());
		}
		T_ASC_PresentationContextID pc = scu.findPresentationContextID(
		    UID_MOVEStudyRootQueryRetrieveInformationModel, "");
		if (!pc) {
			scu.releaseAssociation();
			rx.reset();
			return usv_seterr(err, errlen, -USV_ERR_UNSUPPORTED,
			                  "C-MOVE: %s does not support Study Root C-MOVE",
			                  where(p).c_str());
		}
		std::unique_ptr<DcmDataset> keys(study_keys(study_uid));
		c = scu.sendMOVERequest(pc, OFString(trim(move_dest_ae).c_str()), keys.get(),
		                        nullptr);
		bool broken = c.bad();
		if (scu.isConnected()) {
			if (broken || !scu.final_seen)
				scu.abortAssociation();
			else
				scu.releaseAssociation();
		}
		rx.reset(); /* waits for a receiving association still running */
		rc = retrieve_result(p, "C-MOVE", sink, broken, c, scu.final_seen, scu.final_status,
		                     scu.counts, scu.completed, scu.failed, move_name, why);
		set_counts(n_ok, n_failed, sink, scu.counts, scu.failed);
		rc = unknown_study(p, "C-MOVE", study_uid, rc, sink, why);
		if (rc)
			return usv_seterr(err, errlen, rc, "%s", why.c_str());
		return 0;
	} catch (const std::bad_alloc &) {
		return usv_seterr(err, errlen, -ENOMEM, "C-MOVE: out of memory");
	} catch (...) {
		return usv_seterr(err, errlen, -USV_ERR_DICOM, "C-MOVE: unexpected failure");
	}
}

/*
 * NAME
 *	dcm_save.cpp - write a DICOM file with every error checked
 *
 * DESCRIPTION
 *	See dcm_save.h. DcmFileFormat::saveFile() opens the file itself and
 *	closes it in a destructor that ignores the result, so a failure of
 *	the last buffered write (disk full) or of close() goes unseen. Here
 *	the file is opened by us; DCMTK writes through a FILE on a duplicate
 *	of the descriptor (its stream closes that one), the stdio buffer is
 *	flushed and checked while the stream still exists, and our own
 *	descriptor is closed and checked last.
 */
#include "dcm_save.h"

#include <dcmtk/dcmdata/dcostrmf.h>
#include <dcmtk/dcmdata/dcwcache.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace usv
{

int save_file(DcmFileFormat &ff, const char *path, E_TransferSyntax xfer, E_EncodingType enc,
              E_GrpLenEncoding glen, E_FileWriteMode mode, std::string &why)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	if (fd < 0) {
		int e = errno;
		why = strerror(e);
		return -e;
	}
	int err = 0;
	int sfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	FILE *f = sfd >= 0 ? fdopen(sfd, "wb") : nullptr;
	if (!f) {
		err = errno ? errno : EIO;
		why = strerror(err);
		if (sfd >= 0)
			close(sfd);
	} else {
		DcmWriteCache wcache;
		DcmOutputFileStream os(f); /* fclose()s f (and sfd) when destroyed */
		ff.transferInit();
		errno = 0;
		OFCondition c = ff.write(os, xfer, enc, &wcache, glen, EPD_noChange, 0, 0, 0, mode);
		const int werr = errno;
		ff.transferEnd();
		if (c.good()) {
			os.flush();
			c = os.status();
			if (c.good() && !os.isFlushed())
				c = EC_StreamNotifyClient;
		}
		if (c.bad()) {
			/* a failed fwrite (disk full) keeps its errno */
			err = ferror(f) && werr ? werr : EIO;
			why = c.text();
		} else {
			errno = 0;
			if (fflush(f) != 0 || ferror(f)) {
				err = errno ? errno : EIO;
				why = strerror(err);
			}
		}
	}
	if (close(fd) != 0 && !err) {
		err = errno;
		why = strerror(err);
	}
	/* only a regular file is ours to remove (never a device such as
	 * /dev/full, which a test writes to) */
	struct stat st;
	if (err && stat(path, &st) == 0 && S_ISREG(st.st_mode))
		unlink(path);
	return -err;
}

} // namespace usv

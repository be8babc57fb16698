#include "usv/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *usv_strerror(int code)
{
	if (code < 0)
		code = -code;
	switch (code) {
	case 0:
		return "success";
	case USV_ERR_FORMAT:
		return "malformed input";
	case USV_ERR_UNSUPPORTED:
		return "unsupported feature";
	case USV_ERR_LIMIT:
		return "size limit exceeded";
	case USV_ERR_EXCLUDED:
		return "excluded by policy";
	case USV_ERR_DICOM:
		return "DICOM error";
	default:
		return strerror(code);
	}
}

int usv_seterr(char *errbuf, size_t len, int code, const char *fmt, ...)
{
	if (errbuf && len > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(errbuf, len, fmt, ap);
		va_end(ap);
	}
	return code;
}

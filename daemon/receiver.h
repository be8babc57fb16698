/*
 * NAME
 *	receiver.h - glue between the storage SCP (dicom/) and the spool
 *
 * DESCRIPTION
 *	usv_receiver_sink(sp, &sink) fills an usv_scp_sink whose functions
 *	write into the spool sp (tmp/ -> incoming/, statvfs watermark). sp
 *	must outlive every scp started with the sink.
 */
#ifndef USV_RECEIVER_H
#define USV_RECEIVER_H

#include "spool.h"
#include "usv/dcm_scp.h"

void usv_receiver_sink(usv_spool *sp, usv_scp_sink *sink);

#endif

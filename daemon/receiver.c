/*
 * NAME
 *	receiver.c - binds the storage SCP's sink to the spool
 *
 * DESCRIPTION
 *	See receiver.h. Each sink function forwards to the spool function of
 *	the same purpose; the spool handle is thread-safe.
 */
#include "receiver.h"

static int sink_tmp_create(void *ctx, char *path, size_t pathlen)
{
	return usv_spool_tmp_create(ctx, NULL, path, pathlen);
}

static int sink_commit(void *ctx, const char *tmp_path, char *id, size_t idlen)
{
	return usv_spool_commit(ctx, tmp_path, id, idlen);
}

static void sink_discard(void *ctx, const char *tmp_path)
{
	(void)usv_spool_discard(ctx, tmp_path);
}

static int sink_low_space(void *ctx, uint64_t watermark)
{
	return usv_spool_low_space(ctx, watermark);
}

void usv_receiver_sink(usv_spool *sp, usv_scp_sink *sink)
{
	sink->ctx = sp;
	sink->tmp_create = sink_tmp_create;
	sink->commit = sink_commit;
	sink->discard = sink_discard;
	sink->low_space = sink_low_space;
}

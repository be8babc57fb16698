/*
 * NAME
 *	spool_test_util.h - scaffolding shared by the spool unit tests
 *
 * DESCRIPTION
 *	spool_root is the spool folder of the current test: spool_setup()
 *	makes a fresh temporary folder and points spool_root at <it>/spool
 *	(not yet created: usv_spool_open creates it); spool_teardown()
 *	removes the temporary folder. Both are cmocka fixtures.
 *	spool_count_dir(sub) counts the entries of spool_root/sub that do not
 *	start with '.' (0 when it does not exist); spool_open_test() opens
 *	spool_root and fails the test if that fails.
 */
#ifndef USV_SPOOL_TEST_UTIL_H
#define USV_SPOOL_TEST_UTIL_H

#include <limits.h>
#include <stddef.h>

#include "spool.h"

extern char spool_root[PATH_MAX];

int spool_setup(void **state);
int spool_teardown(void **state);
size_t spool_count_dir(const char *sub);
usv_spool *spool_open_test(void);

#endif

/*
 * NAME
 *	cli.h - subcommands of the usview tool
 *
 * DESCRIPTION
 *	Each subcommand is `int usv_cmd_<name>(int argc, char **argv)` with
 *	argv[0] = the subcommand name; it returns the process exit status
 *	(0 ok, 1 failure, 2 usage). Errors go to stderr as one line
 *	"usview <cmd>: <file>: <reason>". Every subcommand parses its options
 *	with getopt_long() and the strict number parsers, in the one style
 *	of opt.h: -h / --help prints the usage and exits 0; a usage error is
 *	"usview <cmd>: --<option>: <reason>" and exit status 2.
 */
#ifndef USV_CLI_H
#define USV_CLI_H

typedef struct usv_cli_cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
} usv_cli_cmd;

/* Subcommands (one file each, cmd_<name>.c). */
int usv_cmd_version(int argc, char **argv);
int usv_cmd_report(int argc, char **argv);
int usv_cmd_train(int argc, char **argv);
int usv_cmd_eval(int argc, char **argv);
int usv_cmd_phantom(int argc, char **argv);
int usv_cmd_harvest(int argc, char **argv);
int usv_cmd_preview(int argc, char **argv);
int usv_cmd_classify(int argc, char **argv);
int usv_cmd_import_caffe(int argc, char **argv);
int usv_cmd_import_tflite(int argc, char **argv);
int usv_cmd_compare(int argc, char **argv);
int usv_cmd_bench(int argc, char **argv);
int usv_cmd_forward(int argc, char **argv);
int usv_cmd_model_info(int argc, char **argv);

#endif

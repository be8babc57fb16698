/*
 * NAME
 *	qa.h - what a worker tells the QA study tracker about one instance
 *
 * DESCRIPTION
 *	After an instance's line is durable in results.jsonl and before the
 *	instance leaves active/, the worker calls env->on_instance with a
 *	usv_qa_instance (every outcome: done, failed, excluded). Processing
 *	is at-least-once, so the same sop_instance_uid may be reported again
 *	after a crash: the receiver deduplicates. All strings are borrowed
 *	for the duration of the call and are never NULL ("" when unknown).
 */
#ifndef USV_QA_H
#define USV_QA_H

struct usv_qa_instance {
	const char *spool_id;
	const char *outcome; /* "done", "failed", "excluded" */
	const char *study_uid, *series_uid, *sop_instance_uid, *sop_class_uid;
	/* what protocols match on */
	const char *study_description, *requested_procedure_description, *protocol_name;
	/* grouping on the QA page (never the patient's name or ID) */
	const char *station_name, *study_date, *accession_hash;
	/* done only: the model's most probable class of the first result */
	const char *label;
	double prob;
	int uncertain;                  /* 1: below model.min_confidence */
	const char *technologist_label; /* "" = none */
	const char *label_source;       /* "" = none */
	int agrees;                     /* 1, 0; -1 = no technologist label */
};

/* 0, or a negative errno-style code (the worker logs it and carries on). */
typedef int (*usv_qa_instance_fn)(void *ctx, const struct usv_qa_instance *qi);

#endif

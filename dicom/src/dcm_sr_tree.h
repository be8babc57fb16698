/*
 * NAME
 *	dcm_sr_tree.h - what the per-instance SR (dcm_sr.cpp) and the study SR
 *	(dcm_study_sr.cpp) build their content trees with
 *
 * DESCRIPTION
 *	usv::SrTree appends content items to a DSRDocumentTree, each at the
 *	end of its parent's list (DCMTK's AM_afterCurrent would insert right
 *	after the cursor), and throws usv::ResultError (-USV_ERR_DICOM) with
 *	"<what>: <item>: <DCMTK's reason>" on any failure; what ("SR",
 *	"study SR") names the object in messages. A concept with an empty
 *	code value adds the item without a concept name (IMAGE references).
 *	Callers hold usv::sr_mutex() while they use dcmsr.
 *
 *	usv::sr_ok(cond, what, item) throws the same error for a bad cond.
 *	usv::sr_view_code(label, what) is the 99USVIEW code of a view label
 *	(usv_view_describe). usv::sr_fix_old_date_time(ds) rewrites
 *	ACR-NEMA style dates and times copied from old sources ("1994.01.30",
 *	"11:25:01") in the DICOM DA/TM form. usv::sr_declare_scheme(doc,
 *	what) declares the private coding scheme 99USVIEW in the Coding
 *	Scheme Identification Sequence.
 */
#ifndef USV_DCM_SR_TREE_H
#define USV_DCM_SR_TREE_H

#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmsr/dsrcodvl.h>
#include <dcmtk/dcmsr/dsrdoc.h>

#include <string>

namespace usv
{

void sr_ok(const OFCondition &c, const char *what, const char *item);
DSRCodedEntryValue sr_view_code(const char *label, const char *what);
void sr_fix_old_date_time(DcmDataset &ds);
void sr_declare_scheme(DSRDocument &doc, const char *what);

class SrTree
{
      public:
	SrTree(DSRDocumentTree &t, const char *what) : t_(t), what_(what)
	{
	}
	size_t root(const DSRCodedEntryValue &concept);
	size_t add(size_t parent, DSRTypes::E_RelationshipType rel, DSRTypes::E_ValueType vt,
	           const DSRCodedEntryValue &concept);
	DSRContentItem &item()
	{
		return t_.getCurrentContentItem();
	}
	size_t text(size_t parent, DSRTypes::E_RelationshipType rel,
	            const DSRCodedEntryValue &concept, const std::string &v);
	size_t uidref(size_t parent, DSRTypes::E_RelationshipType rel,
	              const DSRCodedEntryValue &concept, const std::string &v);
	size_t code(size_t parent, DSRTypes::E_RelationshipType rel,
	            const DSRCodedEntryValue &concept, const DSRCodedEntryValue &v);
	size_t container(size_t parent, const DSRCodedEntryValue &concept);
	size_t num(size_t parent, const DSRCodedEntryValue &concept, const std::string &v,
	           const DSRCodedEntryValue &unit);

      private:
	void ok(const OFCondition &c, const char *item) const
	{
		sr_ok(c, what_, item);
	}
	DSRDocumentTree &t_;
	const char *what_;
};

} // namespace usv

#endif

/*
 * dcm_sr_tree.cpp - see dcm_sr_tree.h.
 */
#include "dcm_sr_tree.h"

#include "dcm_result_priv.h"
#include "usv/dcm_result.h"
#include "usv/err.h"

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmsr/dsrnumvl.h>

#include <cerrno>

namespace usv
{

void sr_ok(const OFCondition &c, const char *what, const char *item)
{
	if (c.bad())
		throw ResultError(-USV_ERR_DICOM,
		                  std::string(what) + ": " + item + ": " + c.text());
}

DSRCodedEntryValue sr_view_code(const char *label, const char *what)
{
	usv_view_info v;

	if (usv_view_describe(label, &v) != 0)
		throw ResultError(-EINVAL, std::string(what) + ": empty view label");
	DSRCodedEntryValue c;
	/* CVT_auto: values over 16 characters go to Long Code Value. */
	sr_ok(c.setCode(v.code_value, USV_VIEW_SCHEME, v.display), what, "view code");
	return c;
}

void sr_fix_old_date_time(DcmDataset &ds)
{
	static const DcmTagKey dates[] = {DCM_StudyDate, DCM_PatientBirthDate};
	static const DcmTagKey times[] = {DCM_StudyTime};
	for (const DcmTagKey &k : dates) {
		OFString v;
		if (ds.findAndGetOFString(k, v).good() && v.size() == 10 && v[4] == '.' &&
		    v[7] == '.') {
			std::string d = std::string(v.c_str(), 4) + v.substr(5, 2).c_str() +
			                v.substr(8, 2).c_str();
			if (d.find_first_not_of("0123456789") == std::string::npos)
				ds.putAndInsertString(k, d.c_str());
		}
	}
	for (const DcmTagKey &k : times) {
		OFString v;
		if (ds.findAndGetOFString(k, v).good() && v.find(':') != OFString_npos) {
			std::string t;
			for (char ch : std::string(v.c_str()))
				if (ch != ':')
					t += ch;
			if (!t.empty() && t.find_first_not_of("0123456789.") == std::string::npos)
				ds.putAndInsertString(k, t.c_str());
		}
	}
}

void sr_declare_scheme(DSRDocument &doc, const char *what)
{
	DSRCodingSchemeIdentificationList &l = doc.getCodingSchemeIdentification();
	sr_ok(l.addItem(USV_VIEW_SCHEME), what, "coding scheme");
	sr_ok(l.setCodingSchemeName("usview abdominal ultrasound views"), what,
	      "coding scheme name");
	sr_ok(l.setCodingSchemeResponsibleOrganization("usview"), what,
	      "coding scheme organization");
}

size_t SrTree::root(const DSRCodedEntryValue &concept)
{
	size_t id = t_.addContentItem(DSRTypes::RT_isRoot, DSRTypes::VT_Container,
	                              DSRTypes::AM_belowCurrent);
	if (!id)
		throw ResultError(-USV_ERR_DICOM,
		                  std::string(what_) + ": cannot add the root container");
	ok(t_.getCurrentContentItem().setConceptName(concept), "root concept");
	return id;
}

size_t SrTree::add(size_t parent, DSRTypes::E_RelationshipType rel, DSRTypes::E_ValueType vt,
                   const DSRCodedEntryValue &concept)
{
	if (t_.gotoNode(parent) != parent)
		throw ResultError(-USV_ERR_DICOM, std::string(what_) + ": lost a tree node");
	size_t id;
	if (t_.gotoChild()) {
		while (t_.gotoNext()) {
		}
		id = t_.addContentItem(rel, vt, DSRTypes::AM_afterCurrent);
	} else {
		id = t_.addContentItem(rel, vt, DSRTypes::AM_belowCurrent);
	}
	if (!id)
		throw ResultError(-USV_ERR_DICOM, std::string(what_) +
		                                      ": cannot add content item " +
		                                      concept.getCodeMeaning().c_str());
	if (!concept.getCodeValue().empty())
		ok(t_.getCurrentContentItem().setConceptName(concept),
		   concept.getCodeMeaning().c_str());
	return id;
}

size_t SrTree::text(size_t parent, DSRTypes::E_RelationshipType rel,
                    const DSRCodedEntryValue &concept, const std::string &v)
{
	size_t id = add(parent, rel, DSRTypes::VT_Text, concept);
	ok(item().setStringValue(v.c_str()), concept.getCodeMeaning().c_str());
	return id;
}

size_t SrTree::uidref(size_t parent, DSRTypes::E_RelationshipType rel,
                      const DSRCodedEntryValue &concept, const std::string &v)
{
	size_t id = add(parent, rel, DSRTypes::VT_UIDRef, concept);
	ok(item().setStringValue(v.c_str()), concept.getCodeMeaning().c_str());
	return id;
}

size_t SrTree::code(size_t parent, DSRTypes::E_RelationshipType rel,
                    const DSRCodedEntryValue &concept, const DSRCodedEntryValue &v)
{
	size_t id = add(parent, rel, DSRTypes::VT_Code, concept);
	ok(item().setCodeValue(v), concept.getCodeMeaning().c_str());
	return id;
}

size_t SrTree::container(size_t parent, const DSRCodedEntryValue &concept)
{
	return add(parent, DSRTypes::RT_contains, DSRTypes::VT_Container, concept);
}

size_t SrTree::num(size_t parent, const DSRCodedEntryValue &concept, const std::string &v,
                   const DSRCodedEntryValue &unit)
{
	size_t id = add(parent, DSRTypes::RT_contains, DSRTypes::VT_Num, concept);
	ok(item().setNumericValue(DSRNumericMeasurementValue(v.c_str(), unit)),
	   concept.getCodeMeaning().c_str());
	return id;
}

} // namespace usv

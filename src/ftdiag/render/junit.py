"""JUnit XML of an ab-test for CI: one test case per title, failing when base ≡ adapter."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from ftdiag.abtest import ABResult

_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(text: str | None) -> str:
    """Text with the characters XML 1.0 cannot hold (model output has them) replaced."""
    return _NOT_XML.sub("\ufffd", text or "")


def _titles_suite(result: ABResult) -> ET.Element:
    suite = ET.Element("testsuite", name="ftdiag.ab-test.titles")
    failures = 0
    for i, row in enumerate(result.rows, 1):
        case = ET.SubElement(suite, "testcase", classname="ftdiag.ab-test.titles",
                             name=xml_safe(f"{i:03d} {row.title[:120]}"))
        if row.identical:
            failures += 1
            fail = ET.SubElement(case, "failure", type="B001",
                                 message="base and adapter outputs are identical")
            fail.text = xml_safe(row.outputs["adapter"])
        out = ET.SubElement(case, "system-out")
        out.text = xml_safe("\n".join(f"[{arm}] {text}" for arm, text in row.outputs.items()))
    suite.set("tests", str(len(result.rows)))
    suite.set("failures", str(failures))
    return suite


def _checks_suite(result: ABResult) -> ET.Element:
    suite = ET.Element("testsuite", name="ftdiag.ab-test.checks")
    failures = skipped = 0
    for c in result.report.checks:
        case = ET.SubElement(suite, "testcase", classname="ftdiag.ab-test.checks",
                             name=f"{c.code} {c.title}")
        if c.status == "fail":
            failures += 1
            ET.SubElement(case, "failure", type=c.code,
                          message=xml_safe(c.message)).text = xml_safe(c.hint)
        elif c.status == "skip":
            skipped += 1
            ET.SubElement(case, "skipped", message=xml_safe(c.message))
        else:
            ET.SubElement(case, "system-out").text = xml_safe(f"{c.status}: {c.message}")
    suite.set("tests", str(len(result.report.checks)))
    suite.set("failures", str(failures))
    suite.set("skipped", str(skipped))
    return suite


def to_junit(result: ABResult) -> str:
    """<testsuites>: a titles suite (one case per title) and a checks suite (one per check)."""
    root = ET.Element("testsuites", name="ftdiag ab-test")
    for suite in (_titles_suite(result), _checks_suite(result)):
        suite.set("errors", "0")
        root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

#!/usr/bin/env python3
"""Reads a Prometheus text exposition on stdin with the reference parser
(PyPI's prometheus_client) and prints it in a stable form for the t/ tests:
one line per family ("name type help"), then one line per sample with its
labels sorted and JSON-quoted. Free space depends on the slab's bookkeeping,
so it prints as "positive" when above zero."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    text = sys.stdin.buffer.read().decode("utf-8")
    for family in text_string_to_metric_families(text):
        print(f"{family.name} {family.type} {family.documentation}")
        for s in family.samples:
            labels = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(s.labels.items()))
            value = s.value
            if s.name == "shared_map_free_space_bytes":
                value = "positive" if value > 0 else value
            elif float(value).is_integer():
                value = int(value)
            print(f"  {s.name}{{{labels}}} {value}")


if __name__ == "__main__":
    main()

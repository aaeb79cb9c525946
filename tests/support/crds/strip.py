"""Turns a published CRD file into a fixture here: the CRD documents only,
every `description` of the schemas and printer columns removed, the rest
unchanged, behind a header naming where it came from. Collections holding
only scalars are written inline (`{type: string}`), which keeps the files
about a quarter smaller.

usage: strip.py SOURCE.yaml OUT.yaml "REPO PATH at TAG (commit SHA)"

Only schema keywords are removed: a field that happens to be named
`description` (a key of some `properties` map) stays.
"""

import sys

import yaml

# Keywords whose value is one schema, a list of schemas, or a map of
# name -> schema (JSON Schema / OpenAPI v3 as CRDs use it).
ONE = ("items", "additionalProperties", "not")
MANY = ("allOf", "anyOf", "oneOf")
MAP = ("properties", "patternProperties", "definitions")


def strip_schema(node):
    if not isinstance(node, dict):
        return
    if isinstance(node.get("description"), str):
        del node["description"]
    for k in ONE:
        strip_schema(node.get(k))
    for k in MANY:
        for s in node.get(k) or []:
            strip_schema(s)
    for k in MAP:
        for s in (node.get(k) or {}).values():
            strip_schema(s)


def templated(value):
    return isinstance(value, str) and "{{" in value


def main():
    source, out, origin = sys.argv[1:4]
    with open(source) as f:
        docs = [d for d in yaml.safe_load_all(f) if d and d.get("kind") == "CustomResourceDefinition"]
    if not docs:
        sys.exit(f"{source}: no CustomResourceDefinition")
    dropped = False
    for crd in docs:
        meta = crd.get("metadata", {})
        # Helm-wrapped sources (cert-manager) carry template text in labels.
        for field in ("labels", "annotations"):
            given = meta.get(field) or {}
            kept = {k: v for k, v in given.items() if not templated(v)}
            dropped |= len(kept) != len(given)
            if kept:
                meta[field] = kept
            else:
                meta.pop(field, None)
        for version in crd["spec"]["versions"]:
            strip_schema((version.get("schema") or {}).get("openAPIV3Schema"))
            for column in version.get("additionalPrinterColumns") or []:
                column.pop("description", None)
    with open(out, "w") as f:
        f.write(f"# Source: {origin}\n")
        f.write("# Re-serialized by tests/support/crds/strip.py with every description")
        if dropped:
            f.write(" and Helm-templated label")
        f.write(" stripped; the data is otherwise as published.\n")
        yaml.safe_dump_all(
            docs, f, sort_keys=False, explicit_start=True, width=1000, default_flow_style=None
        )


if __name__ == "__main__":
    main()

"""Real tools as judges of what aicr emits, behind one batch protocol.

stdin: a JSON array of requests, each {"op": ..., ...}; stdout: a JSON array
of results in the same order. A result is {"ok": ...} or {"error": "..."}.
One process judges a whole batch, so a test pays Python's and Helm's
start-up once.

Ops:
  helm_lint     {chart, values?, strict?, kube_version?, namespace?}
                -> Helm's lint report (messages with severity 1 info,
                   2 warning, 3 error)
  helm_render   {chart, values?, name, namespace}
                -> {template path: rendered text}
  helm_template {template, values, name, namespace, chart_name,
                 chart_version} -> the one template's output, rendered by
                   Helm's engine inside a throwaway chart
  k8s_validate  {yaml | objects, versions, crds?}
                -> one entry per object: {kind, name, errors: [...]}.
                   Built-in kinds go through kubernetes-validate (strict:
                   unknown fields are errors); kinds defined by a CRD file
                   in `crds` are checked against that CRD's schema, strict
                   in the same way.

Nothing here decides what is right: Helm and the published schemas do.
"""

import copy
import json
import os
import sys
import tempfile

import yaml


def _helm():
    import helm_python

    return helm_python


def helm_lint(req):
    helm = _helm()
    return helm.lint(
        req["chart"],
        req.get("values"),
        strict=req.get("strict", True),
        namespace=req.get("namespace"),
        kube_version=req.get("kube_version"),
    )


def helm_render(req):
    helm = _helm()
    chart = helm.Chart.load(req["chart"])
    return chart.render(
        req.get("values"), name=req["name"], namespace=req["namespace"]
    )


def helm_template(req):
    helm = _helm()
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "Chart.yaml"), "w") as f:
            yaml.safe_dump(
                {
                    "apiVersion": "v2",
                    "name": req["chart_name"],
                    "version": req["chart_version"],
                },
                f,
            )
        os.mkdir(os.path.join(d, "templates"))
        with open(os.path.join(d, "templates", "case.yaml"), "w") as f:
            f.write(req["template"])
        chart = helm.Chart.load(d)
        out = chart.render(
            req.get("values"), name=req["name"], namespace=req["namespace"]
        )
        return out[f"{req['chart_name']}/templates/case.yaml"]


def _strict(schema):
    """A CRD's structural schema made strict the way the API server prunes:
    an object with declared properties admits no others unless it says so.
    OpenAPI's `nullable` becomes JSON Schema's null type."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _crd_schemas(paths):
    """(apiVersion, kind) -> strict JSON schema, from CRD files."""
    found = {}
    for path in paths:
        with open(path) as f:
            for crd in yaml.safe_load_all(f):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                spec = crd["spec"]
                for v in spec["versions"]:
                    schema = copy.deepcopy(v["schema"]["openAPIV3Schema"])
                    props = schema.setdefault("properties", {})
                    # The API server owns these three; ObjectMeta is checked
                    # by its own rules, not the CRD's.
                    props["apiVersion"] = {"type": "string"}
                    props["kind"] = {"type": "string"}
                    props["metadata"] = {"type": "object"}
                    key = (f"{spec['group']}/{v['name']}", spec["names"]["kind"])
                    found[key] = _strict(schema)
    return found


def _metadata_errors(obj):
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return ["metadata: missing or not a map"]
    errors = []
    if not meta.get("name") and not meta.get("generateName"):
        errors.append("metadata.name: missing")
    for field in ("labels", "annotations"):
        for k, v in (meta.get(field) or {}).items():
            if not isinstance(v, str):
                errors.append(f"metadata.{field}.{k}: {v!r} is not a string")
    return errors


def k8s_validate(req):
    import jsonschema
    import kubernetes_validate

    if "yaml" in req:
        objects = [o for o in yaml.safe_load_all(req["yaml"]) if o is not None]
    else:
        objects = req["objects"]
    crds = _crd_schemas(req.get("crds", []))
    results = []
    for obj in objects:
        if not isinstance(obj, dict) or "kind" not in obj or "apiVersion" not in obj:
            results.append({"kind": None, "name": None, "errors": [f"not an object: {obj!r:.200}"]})
            continue
        name = (obj.get("metadata") or {}).get("name")
        errors = []
        key = (obj["apiVersion"], obj["kind"])
        if key in crds:
            validator = jsonschema.Draft202012Validator(crds[key])
            for e in validator.iter_errors(obj):
                where = ".".join(str(p) for p in e.absolute_path)
                errors.append(f"{where}: {e.message}")
            errors += _metadata_errors(obj)
        else:
            for version in req["versions"]:
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    where = ".".join(str(p) for p in e.absolute_path)
                    errors.append(f"{version}: {where}: {e.message}")
                except kubernetes_validate.SchemaNotFoundError:
                    errors.append(
                        f"{version}: no schema for {obj['apiVersion']} {obj['kind']}"
                        " (and no CRD fixture given)"
                    )
        results.append({"kind": obj["kind"], "name": name, "errors": errors})
    return results


OPS = {
    "helm_lint": helm_lint,
    "helm_render": helm_render,
    "helm_template": helm_template,
    "k8s_validate": k8s_validate,
}


def main():
    requests = json.load(sys.stdin)
    results = []
    for req in requests:
        try:
            results.append({"ok": OPS[req["op"]](req)})
        except Exception as e:  # every failure is a verdict for the caller
            results.append({"error": f"{type(e).__name__}: {e}"})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()

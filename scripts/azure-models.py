#!/usr/bin/env python3
"""Extract the ARM operations and wire models the Azure provider uses from the
official azure-mgmt-* Python wheels, into one JSON file the Azure fake's tests
(crates/gitpod-refarch-fake-azure/tests/models.rs) validate every call against.

Usage: azure-models.py WHEEL_DIR OUT_JSON

The wheels are read with zipfile and parsed with `ast` (nothing is imported, so
only the standard library is needed). Both generator styles are understood:
- msrest ("autorest"): models with `_attribute_map` / `_validation` (flattened
  keys such as "properties.addressSpace" are unflattened into nested models),
  enums from the `__init__` annotations (`Union[str, "_models.X"]` = open enum);
- TypeSpec: models with `name: T = rest_field(name="wire", visibility=[...])`
  (read-only = visibility ["read"], required = not Optional) and base classes.
Operations come from the `build_*_request` functions (method, URL template,
api-version, path parameter constraints, query parameters) and the operation
class methods that call them (accepted status codes, the LRO headers read per
status, `final-state-via`, the request and response models).

Output (see OPERATIONS below for the selection):
{
  "packages": {"azure-mgmt-network": "30.2.0", ...},
  "operations": [{"id", "service", "group", "name", "api_version", "method",
                  "url_template", "path_params": {name: {multi_segment, pattern,
                  min_length, max_length}}, "query_params", "ok_status_codes",
                  "lro", "final_state_via", "lro_headers": {status: [header]},
                  "request_model", "response_model"}],
  "models": {"service.Model": {wire_name: {"type", "readonly", "required",
             "secret", "visibility"?, "enum"?: {"name", "values", "open"},
             "constraints"?}}},
}
Types are msrest-like strings: str, int, float, bool, iso-8601, duration,
object, "[T]" (array), "{T}" (map of T) or a model key "service.Model".
"""

import ast
import json
import re
import sys
import zipfile
from pathlib import Path

# service -> (distribution, package path inside the wheel, {operation group: [methods]})
OPERATIONS = {
    "resource": (
        "azure-mgmt-resource",
        "azure/mgmt/resource/resources",
        {
            "ResourceGroups": ["create_or_update", "get", "check_existence", "update", "begin_delete"],
            "Providers": ["register", "get"],
        },
    ),
    "network": (
        "azure-mgmt-network",
        "azure/mgmt/network",
        {
            "VirtualNetworks": ["begin_create_or_update", "get", "begin_delete", "update_tags"],
            "Subnets": ["begin_create_or_update", "get", "begin_delete", "list"],
        },
    ),
    "containerservice": (
        "azure-mgmt-containerservice",
        "azure/mgmt/containerservice",
        {
            "ManagedClusters": [
                "begin_create_or_update",
                "get",
                "begin_delete",
                "begin_update_tags",
                "list_cluster_user_credentials",
                "list_cluster_admin_credentials",
            ],
            "AgentPools": ["begin_create_or_update", "get", "begin_delete", "list"],
        },
    ),
    "dns": (
        "azure-mgmt-dns",
        "azure/mgmt/dns",
        {
            "Zones": ["create_or_update", "get", "begin_delete", "update"],
            "RecordSets": ["create_or_update", "get", "delete", "update", "list_by_dns_zone", "list_by_type"],
        },
    ),
    "privatedns": (
        "azure-mgmt-privatedns",
        "azure/mgmt/privatedns",
        {
            "PrivateZones": ["begin_create_or_update", "get", "begin_delete", "begin_update"],
            "VirtualNetworkLinks": ["begin_create_or_update", "get", "begin_delete", "begin_update"],
        },
    ),
    "msi": (
        "azure-mgmt-msi",
        "azure/mgmt/msi/v2024_11_30",
        {
            "UserAssignedIdentities": ["create_or_update", "get", "delete", "update"],
            "FederatedIdentityCredentials": ["create_or_update", "get", "delete", "list"],
        },
    ),
    "authorization": (
        "azure-mgmt-authorization",
        "azure/mgmt/authorization/v2022_04_01",
        {
            "RoleAssignments": ["create", "get", "delete", "list_for_scope"],
        },
    ),
    "containerregistry": (
        "azure-mgmt-containerregistry",
        "azure/mgmt/containerregistry",
        {
            "Registries": [
                "begin_create",
                "get",
                "begin_delete",
                "begin_update",
                "check_name_availability",
                "begin_generate_credentials",
            ],
            "ScopeMaps": ["begin_create", "get", "begin_delete", "begin_update"],
            "Tokens": ["begin_create", "get", "begin_delete", "begin_update"],
        },
    ),
    "mysqlflexibleservers": (
        "azure-mgmt-mysqlflexibleservers",
        "azure/mgmt/mysqlflexibleservers",
        {
            "Servers": ["begin_create", "get", "begin_delete", "begin_update"],
            "Databases": ["begin_create_or_update", "get", "begin_delete"],
            "Configurations": ["begin_create_or_update", "begin_update", "get"],
            "CheckNameAvailability": ["execute"],
            "CheckNameAvailabilityWithoutLocation": ["execute"],
        },
    ),
}

# Fields the REST specs mark `x-ms-secret` (never answered by a GET), for the
# msrest-style wheels, which do not carry the flag. TypeSpec fields without "read"
# visibility are write-only and get the same treatment automatically.
SECRETS = {
    ("mysqlflexibleservers", "Server"): ["properties.administratorLoginPassword"],
    ("mysqlflexibleservers", "ServerForUpdate"): ["properties.administratorLoginPassword"],
}

PRIMITIVES = {
    "str": "str",
    "int": "int",
    "long": "int",
    "float": "float",
    "bool": "bool",
    "iso-8601": "iso-8601",
    "rfc-1123": "iso-8601",
    "date": "str",
    "time": "str",
    "duration": "duration",
    "unix-time": "int",
    "bytearray": "str",
    "base64": "str",
    "object": "object",
}
ANNOTATION_PRIMITIVES = {
    "str": "str",
    "int": "int",
    "float": "float",
    "bool": "bool",
    "Any": "object",
    "JSON": "object",
    "bytes": "str",
    "datetime.datetime": "iso-8601",
    "datetime.date": "str",
    "datetime.time": "str",
    "datetime.timedelta": "duration",
}


def fail(msg):
    sys.exit(f"azure-models.py: {msg}")


class Unsupported(Exception):
    """An annotation or type this extractor does not understand."""


# --------------------------------------------------------------------------- sources


class Package:
    """The parsed .py files of one service package inside a wheel (no aio/)."""

    def __init__(self, wheel, root):
        self.files = {}
        with zipfile.ZipFile(wheel) as z:
            for name in z.namelist():
                if not name.startswith(root + "/") or not name.endswith(".py"):
                    continue
                rel = name[len(root) + 1 :]
                if "/" in rel and rel.split("/")[0] not in ("models", "operations"):
                    continue
                self.files[rel] = ast.parse(z.read(name).decode("utf-8"), filename=name)
        if not any(k.startswith("operations/") for k in self.files):
            fail(f"{wheel}: no {root}/operations")

    def modules(self, folder):
        return [t for _, t in self.named_modules(folder)]

    def named_modules(self, folder):
        """(file name, tree) of the modules under `folder` (build_* names are per module)."""
        return [(k, t) for k, t in sorted(self.files.items()) if k.startswith(folder + "/")]


def const_str(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def dotted(node):
    """`a.b.c` of a Name/Attribute chain, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def call_name(call):
    return dotted(call.func) if isinstance(call, ast.Call) else None


def kwarg(call, name):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


# --------------------------------------------------------------------------- enums


def parse_enums(pkg):
    enums = {}
    for tree in pkg.modules("models"):
        for cls in tree.body:
            if not isinstance(cls, ast.ClassDef):
                continue
            if not any(dotted(b) == "Enum" for b in cls.bases):
                continue
            values = []
            for st in cls.body:
                if isinstance(st, ast.Assign) and const_str(st.value) is not None:
                    values.append(st.value.value)
            enums[cls.name] = values
    return enums


# --------------------------------------------------------------------------- annotations


def unquote(node):
    """A string annotation ("_models.X" or 'list["_models.X"]') parsed as an expression."""
    s = const_str(node)
    if s is not None:
        return ast.parse(s, mode="eval").body
    return node


def strip_optional(node):
    """(inner, optional) for Optional[X] / Union[X, None]."""
    node = unquote(node)
    if isinstance(node, ast.Subscript) and dotted(node.value) == "Optional":
        return unquote(node.slice), True
    if isinstance(node, ast.Subscript) and dotted(node.value) == "Union":
        elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        rest = [e for e in elts if not (isinstance(e, ast.Constant) and e.value is None)]
        if len(rest) < len(elts):
            if len(rest) == 1:
                return unquote(rest[0]), True
            return ast.Subscript(value=node.value, slice=ast.Tuple(elts=rest, ctx=ast.Load()), ctx=ast.Load()), True
    return node, False


def annotation_type(node, service, enums):
    """(type string, enum info or None) of a (non-Optional) annotation."""
    node = unquote(node)
    name = dotted(node)
    if name is not None:
        if name.startswith("_models."):
            short = name.split(".", 1)[1]
            if short in enums:
                return "str", {"name": f"{service}.{short}", "values": enums[short], "open": False}
            return f"{service}.{short}", None
        if name in ANNOTATION_PRIMITIVES:
            return ANNOTATION_PRIMITIVES[name], None
        raise Unsupported(f"{service}: unknown annotation {ast.unparse(node)}")
    if isinstance(node, ast.Subscript):
        head = dotted(node.value)
        if head in ("list", "List"):
            t, e = annotation_type(node.slice, service, enums)
            return f"[{t}]", e
        if head in ("dict", "Dict"):
            value = node.slice.elts[1]
            t, e = annotation_type(value, service, enums)
            return "{" + t + "}", e
        if head == "Union":
            elts = [unquote(e) for e in node.slice.elts]
            names = [dotted(e) for e in elts]
            models = [e for e, n in zip(elts, names) if n and n.startswith("_models.")]
            if "str" in names and len(models) == 1:
                t, e = annotation_type(models[0], service, enums)
                if e is not None:
                    e = dict(e, open=True)
                    return t, e
            raise Unsupported(f"{service}: unsupported union {ast.unparse(node)}")
        if head == "Literal":
            vals = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            return "str", {"name": "literal", "values": [v.value for v in vals], "open": False}
        if head == "Optional":
            return annotation_type(node.slice, service, enums)
    raise Unsupported(f"{service}: unsupported annotation {ast.unparse(node)}")


# --------------------------------------------------------------------------- models


def split_key(key):
    """Split an msrest flattened key on unescaped dots ("a\\.b.c" -> ["a.b", "c"])."""
    parts = re.split(r"(?<!\\)\.", key)
    return [p.replace("\\.", ".") for p in parts]


def msrest_type(t, service, known_models):
    if t.startswith("[") and t.endswith("]"):
        return "[" + msrest_type(t[1:-1], service, known_models) + "]"
    if t.startswith("{") and t.endswith("}"):
        return "{" + msrest_type(t[1:-1], service, known_models) + "}"
    if t in PRIMITIVES:
        return PRIMITIVES[t]
    if t in known_models:
        return f"{service}.{t}"
    raise Unsupported(f"{service}: unknown msrest type {t}")


def literal(node):
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def parse_models(pkg, service, enums):
    """{model name: ("msrest"|"typespec", class node)} then flattened field tables."""
    classes = {}
    for tree in pkg.modules("models"):
        for cls in tree.body:
            if isinstance(cls, ast.ClassDef) and cls.name not in enums:
                classes[cls.name] = cls
    models = {}

    def msrest_fields(cls):
        amap, validation, init_ann = None, {}, {}
        for st in cls.body:
            if isinstance(st, (ast.Assign, ast.AnnAssign)):
                target = st.targets[0] if isinstance(st, ast.Assign) else st.target
                if isinstance(target, ast.Name) and target.id == "_attribute_map":
                    amap = literal(st.value)
                if isinstance(target, ast.Name) and target.id == "_validation":
                    validation = literal(st.value) or {}
            if isinstance(st, ast.FunctionDef) and st.name == "__init__":
                for a in st.args.kwonlyargs + st.args.args:
                    if a.annotation is not None:
                        init_ann[a.arg] = a.annotation
        return amap, validation, init_ann

    def typespec_fields(cls, seen=()):
        fields = {}
        for b in cls.bases:
            bname = dotted(b)
            if bname in classes and bname not in seen:
                fields.update(typespec_fields(classes[bname], seen + (cls.name,)))
        for st in cls.body:
            if not (isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name)):
                continue
            fn = call_name(st.value)
            if fn not in ("rest_field", "rest_discriminator"):
                continue
            wire = const_str(kwarg(st.value, "name")) or st.target.id
            vis = literal(kwarg(st.value, "visibility")) if kwarg(st.value, "visibility") is not None else None
            inner, optional = strip_optional(st.annotation)
            try:
                t, enum = annotation_type(inner, service, enums)
            except Unsupported as e:
                t, enum = f"?{e}", None
            field = {
                "type": t,
                "readonly": vis == ["read"],
                "required": not optional and vis != ["read"],
                "secret": vis is not None and "read" not in vis,
            }
            if vis is not None:
                field["visibility"] = vis
            if enum is not None:
                field["enum"] = enum
            if fn == "rest_discriminator":
                field["discriminator"] = True
            fields[wire] = field
        return fields

    msrest_style = any(msrest_fields(c)[0] is not None for c in classes.values())

    def inherited_msrest(cls, seen=()):
        found = msrest_fields(cls)
        if found[0] is not None:
            return found
        for b in cls.bases:
            bname = dotted(b)
            if bname in classes and bname not in seen:
                found = inherited_msrest(classes[bname], seen + (cls.name,))
                if found[0] is not None:
                    return found
        return found

    for name, cls in classes.items():
        if not msrest_style:
            models[name] = typespec_fields(cls)
            continue
        amap, validation, init_ann = inherited_msrest(cls)
        if amap is None:
            continue
        tree = {}
        for pyname, spec in amap.items():
            path = split_key(spec["key"])
            v = validation.get(pyname, {})
            try:
                t = msrest_type(spec["type"], service, classes)
            except Unsupported as e:
                t = f"?{e}"
            field = {
                "type": t,
                "readonly": bool(v.get("readonly")),
                "required": bool(v.get("required")),
                "secret": False,
            }
            cons = {k: v[k] for k in v if k not in ("readonly", "required")}
            if cons:
                field["constraints"] = cons
            if v.get("constant"):
                field["constant"] = True
            ann = init_ann.get(pyname)
            if ann is not None:
                inner, _ = strip_optional(ann)
                try:
                    _, enum = annotation_type(inner, service, enums)
                except Unsupported:
                    enum = None
                if enum is not None:
                    field["enum"] = enum
            node = tree
            for seg in path[:-1]:
                node = node.setdefault(seg, {"__nested__": {}})["__nested__"]
            node[path[-1]] = field
        emit_nested(models, service, name, tree)
    for (svc, model), paths in SECRETS.items():
        if svc != service:
            continue
        for p in paths:
            segs = p.split(".")
            key = model
            for seg in segs[:-1]:
                key = models[key][seg]["type"].split(".", 1)[1]
            models[key][segs[-1]]["secret"] = True
    return {f"{service}.{k}": v for k, v in models.items()}


def emit_nested(models, service, name, tree):
    """Store an msrest field tree; nested dicts become synthetic models NAME.seg."""
    out = {}
    for wire, f in tree.items():
        if "__nested__" in f:
            sub = f"{name}.{wire}"
            emit_nested(models, service, sub, f["__nested__"])
            children = models[sub].values()
            out[wire] = {
                "type": f"{service}.{sub}",
                "readonly": all(c["readonly"] for c in children),
                "required": any(c["required"] for c in children),
                "secret": False,
                "flattened": True,
            }
        else:
            out[wire] = f
    models[name] = out


# --------------------------------------------------------------------------- operations


def parse_builders(pkg, service):
    builders = {}
    for modname, tree in pkg.named_modules("operations"):
        for fn in tree.body:
            if not (isinstance(fn, ast.FunctionDef) and fn.name.startswith("build_")):
                continue
            info = {"path_params": {}, "query_params": []}
            for node in ast.walk(fn):
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "_url":
                    s = const_str(node.value)
                    if s is None and call_name(node.value) == "kwargs.pop":
                        s = const_str(node.value.args[1])
                    if s is not None:
                        info["url_template"] = s
                if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == "_url":
                    s = const_str(node.value)
                    if s is not None:
                        info["url_template"] = s
                if isinstance(node, ast.Call) and call_name(node) == "kwargs.pop" and const_str(node.args[0]) == "api_version":
                    inner = node.args[1] if len(node.args) > 1 else None
                    if call_name(inner) == "_params.pop" and len(inner.args) > 1:
                        info["api_version"] = const_str(inner.args[1])
                    elif const_str(inner) is not None:
                        info["api_version"] = const_str(inner)
                if isinstance(node, ast.Call) and call_name(node) == "HttpRequest":
                    info["method"] = const_str(kwarg(node, "method"))
                if isinstance(node, ast.Call) and call_name(node) == "_SERIALIZER.url":
                    pass
                if isinstance(node, ast.Dict):
                    for k, v in zip(node.keys, node.values):
                        if const_str(k) is not None and call_name(v) == "_SERIALIZER.url":
                            p = {"multi_segment": False}
                            for kw in ("pattern", "min_length", "max_length"):
                                if kwarg(v, kw) is not None:
                                    p[kw] = literal(kwarg(v, kw))
                            if literal(kwarg(v, "skip_quote")) is True:
                                p["skip_quote"] = True
                            info["path_params"][k.value] = p
                if (
                    isinstance(node, ast.Assign)
                    and isinstance(node.targets[0], ast.Subscript)
                    and dotted(node.targets[0].value) == "_params"
                ):
                    q = const_str(node.targets[0].slice)
                    if q is not None:
                        info["query_params"].append(q)
            if "url_template" in info and "method" in info:
                tmpl = info["url_template"]
                for pname, p in info["path_params"].items():
                    # A skip_quote parameter standing for a whole scope (`/{scope}/providers/...`)
                    # spans several path segments.
                    if p.get("skip_quote") and tmpl.startswith("/{" + pname + "}"):
                        p["multi_segment"] = True
                    p.pop("skip_quote", None)
                builders[(modname, fn.name)] = info
    return builders


def status_codes(fn):
    for node in ast.walk(fn):
        if (
            isinstance(node, ast.Compare)
            and dotted(node.left) == "response.status_code"
            and isinstance(node.ops[0], ast.NotIn)
        ):
            return literal(node.comparators[0])
    return None


def lro_headers(fn):
    """{status: [header names]} the SDK reads from the response (None = any status)."""
    out = {}

    def headers_in(stmts):
        found = []
        for st in stmts:
            for node in ast.walk(st):
                if (
                    isinstance(node, ast.Assign)
                    and isinstance(node.targets[0], ast.Subscript)
                    and dotted(node.targets[0].value) == "response_headers"
                ):
                    h = const_str(node.targets[0].slice)
                    if h is not None and h not in found:
                        found.append(h)
        return found

    for node in ast.walk(fn):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare) and dotted(node.test.left) == "response.status_code":
            code = literal(node.test.comparators[0])
            if isinstance(code, int):
                hs = headers_in(node.body)
                if hs:
                    out[str(code)] = hs
    if not out:
        hs = headers_in(fn.body)
        if hs:
            out["*"] = hs
    return out


def deserialized_model(fn, service):
    for node in ast.walk(fn):
        if not isinstance(node, ast.Call):
            continue
        name = call_name(node)
        if name == "self._deserialize" and node.args:
            s = const_str(node.args[0])
            if s and s not in PRIMITIVES and not any(
                "headers" in ast.unparse(a) for a in node.args[1:]
            ):
                return f"{service}.{s}"
        if name == "_deserialize" and node.args:
            d = dotted(node.args[0])
            if d and d.startswith("_models."):
                return f"{service}.{d.split('.', 1)[1]}"
            if isinstance(node.args[0], ast.Subscript):
                # _deserialize(list[_models.X], ...) for paged TypeSpec results
                inner = dotted(unquote(node.args[0].slice))
                if inner and inner.startswith("_models."):
                    return f"[{service}.{inner.split('.', 1)[1]}]"
    return None


def request_model(fn, service, enums):
    """The model of the body parameter (msrest: serialize.body(p, "X"); TypeSpec: json.dumps(p))."""
    for node in ast.walk(fn):
        if not isinstance(node, ast.Call):
            continue
        name = call_name(node)
        if name == "self._serialize.body" and len(node.args) > 1:
            s = const_str(node.args[1])
            if s:
                return f"{service}.{s}"
        if name == "json.dumps" and node.args and isinstance(node.args[0], ast.Name):
            param = node.args[0].id
            for a in fn.args.args + fn.args.kwonlyargs:
                if a.arg == param and a.annotation is not None:
                    ann, _ = strip_optional(a.annotation)
                    for e in ast.walk(ann):
                        d = dotted(e)
                        if d and d.startswith("_models."):
                            return f"{service}.{d.split('.', 1)[1]}"
                    if isinstance(ann, ast.Subscript) or dotted(ann):
                        try:
                            t, _ = annotation_type(ann, service, enums)
                            return t
                        except Unsupported:
                            return "object"
    return None


def final_state_via(fn):
    for node in ast.walk(fn):
        if isinstance(node, ast.Call) and call_name(node) in ("ARMPolling", "AsyncARMPolling"):
            opts = kwarg(node, "lro_options")
            if opts is not None:
                return (literal(opts) or {}).get("final-state-via")
            return None
    return None


def parse_operations(pkg, service, groups, builders, enums):
    classes = {}
    for modname, tree in pkg.named_modules("operations"):
        for cls in tree.body:
            if isinstance(cls, ast.ClassDef) and cls.name.endswith("Operations"):
                classes[cls.name[: -len("Operations")]] = (modname, cls)
    ops = []
    for group, methods in groups.items():
        if group not in classes:
            fail(f"{service}: no operation group {group} (have {sorted(classes)})")
        modname, cls = classes[group]
        fns = {}
        for fn in cls.body:
            if isinstance(fn, ast.FunctionDef):
                # the last definition wins: overloads come first, the implementation last
                fns[fn.name] = fn
        for m in methods:
            fn = fns.get(m)
            if fn is None:
                fail(f"{service}: {group} has no method {m} (have {sorted(k for k in fns if not k.startswith('_'))})")
            lro = m.startswith("begin_")
            body_fn = fn
            if lro:
                initial = None
                for node in ast.walk(fn):
                    n = call_name(node)
                    if n and n.startswith("self._") and n.endswith("_initial"):
                        initial = fns.get(n[len("self.") :])
                if initial is None:
                    fail(f"{service}: {group}.{m} has no _initial")
                body_fn = initial
            builder = None
            for node in ast.walk(body_fn):
                n = call_name(node)
                if n and n.startswith("build_") and n.endswith("_request"):
                    builder = n
                    break
            if (modname, builder) not in builders:
                fail(f"{service}: {group}.{m}: builder {builder} not found in {modname}")
            b = builders[(modname, builder)]
            codes = status_codes(body_fn)
            if not codes:
                fail(f"{service}: {group}.{m}: no status codes")
            if b.get("api_version") is None:
                fail(f"{service}: {group}.{m}: no api-version")
            ops.append(
                {
                    "id": f"{service}.{group}.{m}",
                    "service": service,
                    "group": group,
                    "name": m,
                    "api_version": b["api_version"],
                    "method": b["method"],
                    "url_template": b["url_template"],
                    "path_params": b["path_params"],
                    "query_params": sorted(set(b["query_params"])),
                    "ok_status_codes": codes,
                    "lro": lro,
                    "final_state_via": final_state_via(fn) if lro else None,
                    "lro_headers": lro_headers(body_fn),
                    "request_model": request_model(body_fn, service, enums),
                    "response_model": deserialized_model(fn, service),
                }
            )
    return ops


# --------------------------------------------------------------------------- main


def closure(models, roots):
    keep, todo = set(), list(roots)
    while todo:
        t = todo.pop()
        while t and t[0] in "[{":
            t = t[1:-1]
        if t not in models or t in keep:
            continue
        keep.add(t)
        for f in models[t].values():
            todo.append(f["type"])
    return keep


def wheel_version(wheel):
    return Path(wheel).name.split("-")[1]


def main():
    if len(sys.argv) != 3:
        fail("usage: azure-models.py WHEEL_DIR OUT_JSON")
    wheel_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    all_ops, all_models, packages = [], {}, {}
    for service, (dist, root, groups) in OPERATIONS.items():
        wheels = sorted(wheel_dir.glob(dist.replace("-", "_") + "-*.whl"))
        if len(wheels) != 1:
            fail(f"expected one {dist} wheel in {wheel_dir}, found {len(wheels)}")
        packages[dist] = wheel_version(wheels[0])
        pkg = Package(wheels[0], root)
        enums = parse_enums(pkg)
        models = parse_models(pkg, service, enums)
        builders = parse_builders(pkg, service)
        ops = parse_operations(pkg, service, groups, builders, enums)
        roots = [o["request_model"] for o in ops if o["request_model"]]
        roots += [o["response_model"] for o in ops if o["response_model"]]
        for r in roots:
            base = r.strip("[]{}")
            if base not in models and base.split(".", 1)[1] not in PRIMITIVES:
                fail(f"{service}: model {base} referenced by an operation is not defined")
        for k in sorted(closure(models, roots)):
            for wire, f in models[k].items():
                if f["type"].startswith("?"):
                    fail(f"{k}.{wire}: {f['type'][1:]}")
            all_models[k] = models[k]
        all_ops.extend(ops)
    doc = {
        "generated_by": "scripts/azure-models.py",
        "packages": packages,
        "operations": all_ops,
        "models": all_models,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    tmp.replace(out)
    print(f"{out}: {len(all_ops)} operations, {len(all_models)} models from {len(packages)} wheels")


if __name__ == "__main__":
    main()

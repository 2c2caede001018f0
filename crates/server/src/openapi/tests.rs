//! The document against the routes that exist.
//!
//! The routes are read from the source: every `.route(path, methods)` call
//! in `crates/server/src`, with the prefix of the `.nest(prefix, ...)` that
//! mounts the function (or the local router) it is in. A route whose
//! method and path the document does not describe fails the build, and so
//! does a description of a route that does not exist.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use syn::visit::Visit;
use utoipa::openapi::path::{HttpMethod, PathItem};

use super::{document, openapi_path, ANY};

/// `(METHOD, openapi path)`.
type Key = (String, String);

/// A `.route(...)` found in the source.
#[derive(Debug, Clone)]
struct Found {
    file: PathBuf,
    function: String,
    /// The path as written, or the constant's name.
    path: String,
    methods: Vec<String>,
}

/// A `.nest(prefix, target)`: routes registered in `target` (a function
/// called there, or the local router variable of the function the nest is
/// in) are under `prefix`.
#[derive(Debug, Clone)]
struct Nest {
    file: PathBuf,
    function: String,
    prefix: String,
    target: String,
}

#[derive(Default)]
struct Scanner {
    file: PathBuf,
    function: Vec<String>,
    routes: Vec<Found>,
    nests: Vec<Nest>,
    /// `(file, name, value)` of every string constant.
    consts: Vec<(PathBuf, String, String)>,
    /// Functions marked `#[cfg(test)]` or in test modules are skipped.
    in_test: usize,
}

const METHODS: &[&str] = &[
    "get", "post", "put", "patch", "delete", "head", "options", "trace", "any",
];

fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("test")
            || (a.path().is_ident("cfg") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "test"))
    })
}

/// A string literal, or `$` and the path naming a constant
/// (`$crate::cluster::rpc::PATH`).
fn path_arg(expr: &syn::Expr) -> Option<String> {
    match expr {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) => Some(s.value()),
        syn::Expr::Path(p) => {
            let segments: Vec<String> = p
                .path
                .segments
                .iter()
                .map(|s| s.ident.to_string())
                .collect();
            Some(format!("${}", segments.join("::")))
        }
        _ => None,
    }
}

/// The method names in a method-router expression: `get(h)`,
/// `post(h).get(h2)`, `axum::routing::delete(h)`, `any(h)`,
/// `post(h).layer(...)`.
#[derive(Default)]
struct MethodNames(Vec<String>);

impl<'ast> Visit<'ast> for MethodNames {
    fn visit_expr_call(&mut self, call: &'ast syn::ExprCall) {
        if let syn::Expr::Path(p) = &*call.func {
            if let Some(last) = p.path.segments.last() {
                let name = last.ident.to_string();
                if METHODS.contains(&name.as_str()) {
                    self.0.push(name);
                }
            }
        }
        syn::visit::visit_expr_call(self, call);
    }

    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        let name = call.method.to_string();
        if METHODS.contains(&name.as_str()) {
            self.0.push(name);
        }
        // Only the receiver chain: arguments are handlers and layers.
        self.visit_expr(&call.receiver);
    }
}

impl<'ast> Visit<'ast> for Scanner {
    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        let test = is_test(&item.attrs);
        self.in_test += usize::from(test);
        self.function.push(item.sig.ident.to_string());
        syn::visit::visit_item_fn(self, item);
        self.function.pop();
        self.in_test -= usize::from(test);
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        let test = is_test(&item.attrs);
        self.in_test += usize::from(test);
        syn::visit::visit_item_mod(self, item);
        self.in_test -= usize::from(test);
    }

    fn visit_item_const(&mut self, item: &'ast syn::ItemConst) {
        if let Some(value) = path_arg(&item.expr).filter(|v| !v.starts_with('$')) {
            self.consts
                .push((self.file.clone(), item.ident.to_string(), value));
        }
        syn::visit::visit_item_const(self, item);
    }

    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        let function = self.function.last().cloned().unwrap_or_default();
        if self.in_test == 0 && call.args.len() == 2 {
            let path = call.args.first().and_then(path_arg);
            match (call.method.to_string().as_str(), path) {
                ("route", Some(path)) => {
                    let mut names = MethodNames::default();
                    names.visit_expr(&call.args[1]);
                    self.routes.push(Found {
                        file: self.file.clone(),
                        function: function.clone(),
                        path,
                        methods: names.0,
                    });
                }
                ("nest", Some(prefix)) => {
                    let target = match &call.args[1] {
                        syn::Expr::Call(c) => match &*c.func {
                            syn::Expr::Path(p) => {
                                p.path.segments.last().map(|s| s.ident.to_string())
                            }
                            _ => None,
                        },
                        // A local router: the function's own routes.
                        syn::Expr::Path(_) => Some(function.clone()),
                        _ => None,
                    };
                    self.nests.push(Nest {
                        file: self.file.clone(),
                        function: function.clone(),
                        prefix,
                        target: target.unwrap_or_else(|| "<unknown>".into()),
                    });
                }
                _ => {}
            }
        }
        syn::visit::visit_expr_method_call(self, call);
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).expect("read source dir");
    for entry in entries {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn scan() -> Scanner {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut scanner = Scanner::default();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read source");
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        scanner.file = file;
        syn::visit::visit_file(&mut scanner, &ast);
    }
    scanner
}

/// A path as written, or the value of the constant it names: a bare name
/// is a constant of `file`; `a::b::NAME` (or `crate::a::b::NAME`) one of a
/// file `.../a/b.rs` or `.../a/b/mod.rs` (there must be exactly one).
fn resolve(scanner: &Scanner, file: &Path, text: &str) -> String {
    let Some(path) = text.strip_prefix('$') else {
        return text.to_owned();
    };
    let segments: Vec<&str> = path.split("::").collect();
    let (name, modules) = segments.split_last().expect("a path has a segment");
    let modules: Vec<&str> = modules
        .iter()
        .copied()
        .filter(|m| !matches!(*m, "crate" | "self" | "super"))
        .collect();
    let in_module = |f: &Path| {
        if modules.is_empty() {
            return f == file;
        }
        let module = f.with_extension("");
        let module = match module.file_name().and_then(|n| n.to_str()) {
            Some("mod") => module.parent().map(Path::to_path_buf).unwrap_or_default(),
            _ => module,
        };
        let tail: Vec<String> = module
            .iter()
            .rev()
            .take(modules.len())
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        tail.iter()
            .rev()
            .map(String::as_str)
            .eq(modules.iter().copied())
    };
    let values: Vec<&String> = scanner
        .consts
        .iter()
        .filter(|(f, n, _)| n == name && in_module(f))
        .map(|(_, _, value)| value)
        .collect();
    match values.as_slice() {
        [value] => (*value).clone(),
        [] => panic!("route path constant {path} not found"),
        _ => panic!("route path constant {path} is ambiguous: name it by its full path"),
    }
}

/// Every prefix a function's routes are mounted at ("" when not nested).
fn prefixes(scanner: &Scanner, file: &Path, function: &str) -> Vec<String> {
    let nests: Vec<&Nest> = scanner
        .nests
        .iter()
        .filter(|n| n.file == file && n.target == function)
        .collect();
    if nests.is_empty() {
        return vec![String::new()];
    }
    nests
        .iter()
        .flat_map(|n| {
            let own = resolve(scanner, file, &n.prefix);
            // The nesting function may itself be nested.
            let outer = if n.function == function {
                vec![String::new()]
            } else {
                prefixes(scanner, file, &n.function)
            };
            outer.into_iter().map(move |o| format!("{o}{own}"))
        })
        .collect()
}

fn method_names(found: &Found) -> Vec<String> {
    found
        .methods
        .iter()
        .flat_map(|m| match m.as_str() {
            "any" => ANY.iter().map(method_name).collect::<Vec<_>>(),
            other => vec![other.to_uppercase()],
        })
        .collect()
}

fn method_name(method: &HttpMethod) -> String {
    let name = match method {
        HttpMethod::Get => "GET",
        HttpMethod::Post => "POST",
        HttpMethod::Put => "PUT",
        HttpMethod::Patch => "PATCH",
        HttpMethod::Delete => "DELETE",
        HttpMethod::Head => "HEAD",
        HttpMethod::Options => "OPTIONS",
        HttpMethod::Trace => "TRACE",
    };
    name.to_owned()
}

/// What the source registers.
fn registered() -> BTreeSet<Key> {
    let scanner = scan();
    assert!(
        scanner.routes.len() > 50,
        "the scan found only {} routes: is it still reading the router?",
        scanner.routes.len()
    );
    for nest in &scanner.nests {
        assert_ne!(
            nest.target, "<unknown>",
            "a nest the check cannot follow: {nest:?}"
        );
    }
    let mut keys = BTreeSet::new();
    for found in &scanner.routes {
        assert!(
            !found.methods.is_empty(),
            "a route without methods: {found:?}"
        );
        let path = resolve(&scanner, &found.file, &found.path);
        for prefix in prefixes(&scanner, &found.file, &found.function) {
            let full = openapi_path(&format!("{prefix}{path}"));
            for method in method_names(found) {
                keys.insert((method, full.clone()));
            }
        }
    }
    keys
}

fn operations(item: &PathItem) -> Vec<(&'static str, bool)> {
    vec![
        ("GET", item.get.is_some()),
        ("POST", item.post.is_some()),
        ("PUT", item.put.is_some()),
        ("PATCH", item.patch.is_some()),
        ("DELETE", item.delete.is_some()),
        ("HEAD", item.head.is_some()),
        ("OPTIONS", item.options.is_some()),
        ("TRACE", item.trace.is_some()),
    ]
}

/// What the document describes.
fn described() -> BTreeSet<Key> {
    document()
        .paths
        .paths
        .iter()
        .flat_map(|(path, item)| {
            operations(item)
                .into_iter()
                .filter(|(_, present)| *present)
                .map(|(method, _)| (method.to_owned(), path.clone()))
        })
        .collect()
}

#[test]
fn every_route_is_described_and_every_description_is_a_route() {
    let registered = registered();
    let described = described();
    let missing: Vec<_> = registered.difference(&described).collect();
    let extra: Vec<_> = described.difference(&registered).collect();
    assert!(
        missing.is_empty(),
        "routes without a description in crates/server/src/openapi/routes.rs: {missing:#?}"
    );
    assert!(
        extra.is_empty(),
        "descriptions of routes that do not exist: {extra:#?}"
    );
}

#[test]
fn no_route_is_described_twice() {
    let mut seen = BTreeSet::new();
    for route in super::routes::all() {
        for method in &route.methods {
            let key = (method_name(method), route.path.clone());
            assert!(seen.insert(key.clone()), "described twice: {key:?}");
        }
    }
}

#[test]
fn the_scan_reads_nests_and_constants() {
    let registered = registered();
    for (method, path) in [
        ("POST", "/api/v2/sandboxes/boxes"),
        ("GET", "/v2/sandboxes/boxes/{name}"),
        ("DELETE", "/api/v1/admin/keys/{id}"),
        ("GET", "/v1/sandboxes/{id}/execd/ping"),
        ("POST", "/internal/v1/cluster"),
        ("POST", "/api/v1/console/terminal-tickets"),
        ("PATCH", "/v1/templates/{rest}"),
    ] {
        assert!(
            registered.contains(&(method.to_owned(), path.to_owned())),
            "{method} {path} not found by the scan"
        );
    }
}

#[test]
fn the_document_is_openapi_3_1_with_resolvable_references() {
    let json = serde_json::to_value(document()).expect("serialize");
    assert_eq!(json["openapi"], "3.1.0");
    let schemas = json["components"]["schemas"]
        .as_object()
        .expect("components.schemas");
    let schemes = json["components"]["securitySchemes"]
        .as_object()
        .expect("securitySchemes");
    let mut refs = Vec::new();
    collect_refs(&json, &mut refs);
    assert!(refs.len() > 100, "only {} references", refs.len());
    for reference in refs {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected reference {reference}"));
        assert!(schemas.contains_key(name), "dangling reference {reference}");
    }
    for (path, item) in json["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            for requirement in op["security"].as_array().into_iter().flatten() {
                for scheme in requirement.as_object().expect("requirement").keys() {
                    assert!(schemes.contains_key(scheme), "{method} {path}: {scheme}");
                }
            }
            let params: BTreeSet<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            let wanted: BTreeSet<String> = super::path_params(path).into_iter().collect();
            let wanted: BTreeSet<&str> = wanted.iter().map(String::as_str).collect();
            assert_eq!(params, wanted, "{method} {path}: path parameters");
        }
    }
}

fn collect_refs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[test]
fn wire_types_keep_their_required_fields() {
    let json = serde_json::to_value(document()).expect("serialize");
    let required = |name: &str| -> BTreeSet<String> {
        json["components"]["schemas"][name]["required"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has no required list"))
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    assert!(required("SandboxResponse").contains("status"));
    assert!(required("ErrorDetail").contains("message"));
    assert!(required("OsSandbox").contains("createdAt"));
    // Optional request fields are not required.
    assert!(!required("CreateTenantRequest").contains("max_vcpus"));
}

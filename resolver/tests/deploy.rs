//! The manifests in `deploy/` are what a platform team applies, so they are checked as Kubernetes
//! and as ndots would read them: every object parses into its k8s-openapi type and reads back the
//! same (a misspelt field is dropped by the typed parse, so it shows up as a difference), and every
//! container's arguments go through the real binary's flag parser with `-check` on the Corefile its
//! ConfigMap mounts.

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::Value;

/// The Prometheus operator's PrometheusRule (`monitoring.coreos.com/v1`), the fields its CRD has
/// (prometheus-operator's `PrometheusRuleSpec`, `RuleGroup`, `Rule`); no type in k8s-openapi, so
/// written here with unknown fields refused.
mod prometheus_rule {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct PrometheusRule {
        pub api_version: String,
        pub kind: String,
        pub metadata: ObjectMeta,
        pub spec: Spec,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Spec {
        pub groups: Vec<Group>,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Group {
        pub name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub interval: Option<String>,
        pub rules: Vec<Rule>,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Rule {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub alert: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub record: Option<String>,
        pub expr: String,
        #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
        pub for_: Option<String>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        pub labels: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        pub annotations: BTreeMap<String, String>,
    }
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every document of every manifest, with its file.
fn documents() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(deploy_dir()).expect("deploy/").filter_map(|e| e.ok()).map(|e| e.path()).collect();
    files.sort();
    for f in files.into_iter().filter(|f| f.extension().is_some_and(|e| e == "yaml")) {
        let text = std::fs::read_to_string(&f).expect("read");
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            if !v.is_null() {
                out.push((f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), v));
            }
        }
    }
    out
}

/// What the typed parse keeps of a document: anything it dropped or changed is a path in the result.
fn typed_round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) -> Result<Vec<String>, String> {
    let t: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&t).map_err(|e| e.to_string())?;
    let mut diffs = Vec::new();
    diff("", v, &back, &mut diffs);
    Ok(diffs)
}

/// Paths where `a` has something `b` does not (numbers compared as numbers).
fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                match y.get(k) {
                    Some(vb) => diff(&format!("{path}.{k}"), va, vb, out),
                    None => out.push(format!("{path}.{k}")),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => {}
        _ if a == b => {}
        _ => out.push(path.to_string()),
    }
}

fn check_typed(kind: &str, v: &Value) -> Result<Vec<String>, String> {
    match kind {
        "ServiceAccount" => typed_round_trip::<ServiceAccount>(v),
        "ClusterRole" => typed_round_trip::<ClusterRole>(v),
        "ClusterRoleBinding" => typed_round_trip::<ClusterRoleBinding>(v),
        "Role" => typed_round_trip::<Role>(v),
        "RoleBinding" => typed_round_trip::<RoleBinding>(v),
        "ConfigMap" => typed_round_trip::<ConfigMap>(v),
        "Deployment" => typed_round_trip::<Deployment>(v),
        "DaemonSet" => typed_round_trip::<DaemonSet>(v),
        "Service" => typed_round_trip::<Service>(v),
        "PrometheusRule" => typed_round_trip::<prometheus_rule::PrometheusRule>(v),
        other => Err(format!("no type for kind {other}")),
    }
}

#[test]
fn every_manifest_object_is_valid_kubernetes_to_the_letter() {
    let docs = documents();
    assert!(docs.len() >= 6, "the cluster DNS manifest has its six objects: {}", docs.len());
    for (file, v) in &docs {
        let kind = v["kind"].as_str().unwrap_or("");
        let name = v["metadata"]["name"].as_str().unwrap_or("");
        match check_typed(kind, v) {
            Ok(d) => assert!(d.is_empty(), "{file}: {kind} {name}: not Kubernetes fields (misspelt?): {d:?}"),
            Err(e) => panic!("{file}: {kind} {name}: {e}"),
        }
    }
}

#[test]
fn the_round_trip_catches_a_misspelt_field() {
    let v = serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns"},
        "spec": {"clusterIp": "10.96.0.10", "ports": [{"port": 53, "protocl": "UDP"}]}});
    let d = check_typed("Service", &v).expect("parses");
    assert_eq!(d, [".spec.clusterIp", ".spec.ports[0].protocl"]);
}

/// The variables the kubelet gives a pod for the Services that exist (`<NAME>_SERVICE_HOST`), with a
/// ClusterIP made up for a Service that leaves it to the cluster (sources.md#service-env).
fn service_env(docs: &[(String, Value)]) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for (i, (_, v)) in docs.iter().filter(|(_, v)| v["kind"] == "Service").enumerate() {
        let name = v["metadata"]["name"].as_str().unwrap_or_default().replace('-', "_").to_ascii_uppercase();
        let ip = match v["spec"]["clusterIP"].as_str() {
            Some("None") => continue,
            Some(ip) => ip.to_string(),
            None => format!("10.96.0.{}", 100 + i),
        };
        env.push((format!("{name}_SERVICE_HOST"), ip));
    }
    env
}

#[test]
fn every_container_runs_its_args_through_the_binary_and_checks_its_corefile() {
    let docs = documents();
    let config_maps: Vec<&Value> = docs.iter().map(|(_, v)| v).filter(|v| v["kind"] == "ConfigMap").collect();
    let mut checked = 0;
    for (file, v) in &docs {
        if !matches!(v["kind"].as_str(), Some("Deployment" | "DaemonSet")) {
            continue;
        }
        let pod: PodSpec = serde_json::from_value(v["spec"]["template"]["spec"].clone()).expect("pod spec");
        // The pod's ConfigMap volumes, written where the container mounts them.
        let dir = std::env::temp_dir().join(format!("ndots-deploy-{}-{}", std::process::id(), fastrand::u64(..)));
        for c in &pod.containers {
            let mut args = c.args.clone().unwrap_or_default();
            for m in c.volume_mounts.iter().flatten() {
                let vol = pod.volumes.iter().flatten().find(|vol| vol.name == m.name).expect("the mount's volume");
                let Some(cm_ref) = &vol.config_map else { continue };
                let target = dir.join(m.mount_path.trim_start_matches('/'));
                std::fs::create_dir_all(&target).expect("dir");
                let Some(cm) = config_maps.iter().find(|cm| cm["metadata"]["name"] == cm_ref.name.as_str()) else {
                    // An optional ConfigMap (node-local's kube-dns) mounts as an empty directory.
                    assert_eq!(cm_ref.optional, Some(true), "{file}: ConfigMap {} is not in deploy/ and not optional", cm_ref.name);
                    continue;
                };
                match &cm_ref.items {
                    Some(items) => {
                        for item in items {
                            std::fs::write(target.join(&item.path), cm["data"][&item.key].as_str().expect("data")).expect("write");
                        }
                    }
                    None => {
                        for (k, v) in cm["data"].as_object().into_iter().flatten() {
                            std::fs::write(target.join(k), v.as_str().expect("data")).expect("write");
                        }
                    }
                }
                for a in &mut args {
                    if a.starts_with(&m.mount_path) {
                        *a = dir.join(a.trim_start_matches('/')).display().to_string();
                    }
                }
            }
            let out =
                Command::new(env!("CARGO_BIN_EXE_ndots")).args(&args).arg("-check").envs(service_env(&docs)).output().expect("run ndots");
            assert!(
                out.status.success(),
                "{file}: container {}: ndots {} -check: {}",
                c.name,
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(checked >= 2, "the cluster DNS Deployment and the node-local DaemonSet are both checked: {checked}");
}

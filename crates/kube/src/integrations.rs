//! A spec's integrations as pod volumes, mounts and init containers.
//!
//! | integration | on Kubernetes |
//! | --- | --- |
//! | `volume` | a `hostPath`, a PersistentVolumeClaim (`claimName`) or an `emptyDir` of `size` |
//! | `git-lfs` | an `emptyDir`, filled before the replica starts by an init container that clones the repository into `path/name` and pulls its LFS files |
//! | `s3` | an `emptyDir`, filled by an init container that runs `aws s3 sync url path`; credentials given as `secret:NAME` become `secretKeyRef`s |
//! | `model`, `dataset` | nothing: they name a platform registry a cluster does not have; the `Integrations` condition says so |
//!
//! Each integration is mounted at its `path` in the replica's container.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1 as core;
use lull_spec::names::{is_dns_label, slugify};
use lull_spec::secret::ConfigValue;
use lull_spec::{DeploymentSpec, EnvVar, GitLfsIntegration, Integration, S3Integration};

use crate::render::{RenderOptions, env, quantity};

/// What the integrations add to the pod.
#[derive(Debug, Default)]
pub(crate) struct Data {
    /// Volumes of the pod.
    pub volumes: Vec<core::Volume>,
    /// Mounts in the replica's container.
    pub mounts: Vec<core::VolumeMount>,
    /// Containers that fill volumes before the replica starts.
    pub init_containers: Vec<core::Container>,
}

/// The volumes, mounts and init containers of `spec`'s integrations.
pub(crate) fn data(spec: &DeploymentSpec, options: &RenderOptions) -> Data {
    let mut data = Data::default();
    let mut used = BTreeSet::new();
    for integration in &spec.integrations {
        let (source, fetch) = match integration {
            Integration::Volume(v) => {
                let source = if let Some(path) = &v.host_path {
                    Source::Host(path.clone())
                } else if let Some(claim) = &v.claim_name {
                    Source::Claim(claim.clone())
                } else {
                    Source::Empty(v.size.as_ref().map(quantity))
                };
                (source, None)
            }
            Integration::GitLfs(g) => (Source::Empty(None), Some(Fetch::Git(g))),
            Integration::S3(s) => (Source::Empty(None), Some(Fetch::S3(s))),
            Integration::Model(_) | Integration::Dataset(_) => continue,
        };
        let name = volume_name(integration.name(), &used);
        used.insert(name.clone());
        let mut volume = core::Volume {
            name: name.clone(),
            ..core::Volume::default()
        };
        match source {
            Source::Host(path) => {
                volume.host_path = Some(core::HostPathVolumeSource { path, type_: None });
            }
            Source::Claim(claim_name) => {
                volume.persistent_volume_claim = Some(core::PersistentVolumeClaimVolumeSource {
                    claim_name,
                    read_only: None,
                });
            }
            Source::Empty(size_limit) => {
                volume.empty_dir = Some(core::EmptyDirVolumeSource {
                    medium: None,
                    size_limit,
                });
            }
        }
        let mount = core::VolumeMount {
            name: name.clone(),
            mount_path: integration.path().to_owned(),
            ..core::VolumeMount::default()
        };
        if let Some(fetch) = fetch {
            let index = data.init_containers.len();
            data.init_containers
                .push(fetch.container(index, mount.clone(), options));
        }
        data.volumes.push(volume);
        data.mounts.push(mount);
    }
    data
}

enum Source {
    Host(String),
    Claim(String),
    Empty(Option<k8s_openapi::apimachinery::pkg::api::resource::Quantity>),
}

enum Fetch<'a> {
    Git(&'a GitLfsIntegration),
    S3(&'a S3Integration),
}

impl Fetch<'_> {
    fn container(
        &self,
        index: usize,
        mount: core::VolumeMount,
        options: &RenderOptions,
    ) -> core::Container {
        let plain = |name: &str, value: &str| EnvVar {
            name: name.to_owned(),
            value: ConfigValue::Plain(value.to_owned()),
        };
        let (image, command, vars) = match self {
            Fetch::Git(g) => {
                let mut vars = vec![
                    plain("REPOSITORY", &g.url),
                    plain(
                        "DESTINATION",
                        &format!("{}/{}", g.path.trim_end_matches('/'), g.name),
                    ),
                ];
                if let Some(r) = &g.r#ref {
                    vars.push(plain("REF", r));
                }
                // Values travel in the environment, so no URL or ref is ever read as shell code.
                let script = "set -eu; git lfs install --skip-repo; \
                    git clone --depth 1 ${REF:+--branch \"$REF\"} \"$REPOSITORY\" \"$DESTINATION\"; \
                    cd \"$DESTINATION\"; git lfs pull";
                (
                    options.git_image.clone(),
                    vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()],
                    vars,
                )
            }
            Fetch::S3(s) => {
                let mut command = vec![
                    "aws".to_owned(),
                    "s3".to_owned(),
                    "sync".to_owned(),
                    s.url.clone(),
                    s.path.clone(),
                ];
                if let Some(endpoint) = &s.endpoint {
                    command.extend(["--endpoint-url".to_owned(), endpoint.clone()]);
                }
                let mut vars = Vec::new();
                if let Some(region) = &s.region {
                    vars.push(plain("AWS_DEFAULT_REGION", region));
                }
                for (name, value) in [
                    ("AWS_ACCESS_KEY_ID", &s.access_key_id),
                    ("AWS_SECRET_ACCESS_KEY", &s.secret_access_key),
                ] {
                    if let Some(value) = value {
                        vars.push(EnvVar {
                            name: name.to_owned(),
                            value: value.clone(),
                        });
                    }
                }
                (options.s3_image.clone(), command, vars)
            }
        };
        core::Container {
            name: format!("fetch-{index}"),
            image: Some(image),
            command: Some(command),
            env: (!vars.is_empty()).then(|| env(&vars, &options.secret_name)),
            volume_mounts: Some(vec![mount]),
            ..core::Container::default()
        }
    }
}

/// Longest volume name base; leaves room for a `-N` suffix within a DNS label.
const MAX_VOLUME_BASE: usize = 56;

/// A DNS-label volume name from an integration name, which the spec allows to be any text.
fn volume_name(name: &str, used: &BTreeSet<String>) -> String {
    let slug = slugify(name);
    let base = slug[..slug.len().min(MAX_VOLUME_BASE)].trim_end_matches('-');
    let base = if is_dns_label(base) { base } else { "volume" };
    let mut candidate = base.to_owned();
    let mut n = 2;
    while used.contains(&candidate) {
        candidate = format!("{base}-{n}");
        n += 1;
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> DeploymentSpec {
        let (mut deployments, _) = lull_spec::load_str(yaml, "test.yaml")
            .into_valid()
            .expect("the test spec is valid");
        deployments.remove(0).spec
    }

    #[test]
    fn git_lfs_and_s3_are_fetched_into_an_empty_dir_before_the_replica_starts() {
        let data = data(
            &spec(
                r#"
name: a
image: app:1
integrations:
  - { type: git-lfs, name: bert, path: /models, url: "https://huggingface.co/bert", ref: main }
  - type: s3
    name: Data Set
    path: /data
    url: "s3://bucket/prefix"
    region: eu-west-1
    endpoint: "https://minio.example"
    accessKeyId: AKIAEXAMPLE
    secretAccessKey: "secret:s3Secret"
  - { type: dataset, name: registry, path: /registry, id: d1 }
"#,
            ),
            &RenderOptions::default(),
        );
        let names: Vec<&str> = data.volumes.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["bert", "data-set"], "a dataset is not mounted");
        assert!(data.volumes.iter().all(|v| v.empty_dir.is_some()));
        let mounts: Vec<(&str, &str)> = data
            .mounts
            .iter()
            .map(|m| (m.name.as_str(), m.mount_path.as_str()))
            .collect();
        assert_eq!(mounts, [("bert", "/models"), ("data-set", "/data")]);

        let git = &data.init_containers[0];
        assert_eq!(git.name, "fetch-0");
        assert_eq!(git.image.as_deref(), Some(crate::render::DEFAULT_GIT_IMAGE));
        let env: Vec<(String, Option<String>)> = git
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect();
        assert_eq!(
            env,
            [
                (
                    "REPOSITORY".to_owned(),
                    Some("https://huggingface.co/bert".to_owned())
                ),
                ("DESTINATION".to_owned(), Some("/models/bert".to_owned())),
                ("REF".to_owned(), Some("main".to_owned())),
            ]
        );
        let script = git
            .command
            .as_ref()
            .map(|c| c[2].clone())
            .unwrap_or_default();
        assert!(script.contains("git lfs pull"), "{script}");
        assert!(
            !script.contains("huggingface"),
            "values stay out of the script"
        );

        let s3 = &data.init_containers[1];
        assert_eq!(s3.name, "fetch-1");
        assert_eq!(
            s3.command.clone().unwrap_or_default(),
            [
                "aws",
                "s3",
                "sync",
                "s3://bucket/prefix",
                "/data",
                "--endpoint-url",
                "https://minio.example"
            ]
        );
        let secret = s3
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "AWS_SECRET_ACCESS_KEY")
            .and_then(|e| e.value_from.as_ref())
            .and_then(|v| v.secret_key_ref.as_ref())
            .map(|r| (r.name.as_str(), r.key.as_str()));
        assert_eq!(secret, Some(("lull-secrets", "s3Secret")));
        assert_eq!(
            s3.volume_mounts.as_ref().map(|m| m[0].mount_path.as_str()),
            Some("/data")
        );
    }

    #[test]
    fn volume_names_are_unique_labels() {
        let mut used = BTreeSet::new();
        for name in ["data", "Data", "!!!", "!!!"] {
            let chosen = volume_name(name, &used);
            assert!(is_dns_label(&chosen), "{chosen}");
            assert!(used.insert(chosen));
        }
        assert_eq!(
            used.into_iter().collect::<Vec<_>>(),
            ["data", "data-2", "volume", "volume-2"]
        );
        assert!(is_dns_label(&volume_name(
            &"x".repeat(100),
            &BTreeSet::new()
        )));
    }
}

//! A provider written outside the SDK, with its public API only: a [`Registry`] for
//! a registry the company already runs (Harbor, GitLab, Artifactory, Docker's
//! distribution). It creates nothing: it hands Gitpod the URL and push credentials it
//! was given, and a destroy leaves the registry alone.
//!
//! The rest of the installation comes from the simulated cloud; the engine routes the
//! registry to this type and every other resource to the sim.
//!
//! ```sh
//! REGISTRY_PASSWORD=... cargo run -p gitpod-refarch-examples --example existing_registry
//! ```

use std::sync::Arc;

use gitpod_refarch::engine::TokioClock;
use gitpod_refarch::provider::{Inputs, Observed, Operation, Progress, ProviderInfo};
use gitpod_refarch::resource::{Output, RegistryOutput, RegistrySpec};
use gitpod_refarch::sim::{LatencyProfile, SimCloud};
use gitpod_refarch::spec::RegistryMode;
use gitpod_refarch::{
    async_trait, Engine, Error, Providers, ReferenceArchitecture, Registry, Result, Secret,
};

/// A registry that exists already.
struct ExistingRegistry {
    /// Host (`harbor.example.com`).
    server: String,
    /// Project or namespace Gitpod pushes to.
    project: String,
    /// A robot account allowed to push there.
    username: String,
    password: Secret,
}

impl ExistingRegistry {
    fn output(&self, spec: &RegistrySpec) -> Output {
        Output::Registry(RegistryOutput::External {
            url: format!("{}/{}/{}", self.server, self.project, spec.repository),
            server: self.server.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
        })
    }
}

#[async_trait]
impl Registry for ExistingRegistry {
    fn info(&self) -> ProviderInfo {
        ProviderInfo::new("existing-registry")
    }

    // Always there, exactly as the spec wants it: the plan shows no change.
    async fn observe(&self, spec: &RegistrySpec) -> Result<Option<Observed<RegistrySpec>>> {
        Ok(Some(Observed::ready(spec.clone(), Some(self.output(spec)))))
    }

    async fn ensure(&self, spec: &RegistrySpec, _inputs: &Inputs) -> Result<Progress> {
        if spec.mode != RegistryMode::Managed {
            return Err(Error::invalid_input(
                "an existing registry needs registry.mode: managed",
            ));
        }
        Ok(Progress::Done(Some(self.output(spec))))
    }

    // Not ours to delete.
    async fn delete(&self, _spec: &RegistrySpec) -> Result<Progress> {
        Ok(Progress::Done(None))
    }

    async fn poll(&self, _op: &Operation) -> Result<Progress> {
        Ok(Progress::Done(None))
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let password = std::env::var("REGISTRY_PASSWORD").unwrap_or_else(|_| "example-only".into());
    let registry = Arc::new(ExistingRegistry {
        server: "harbor.example.com".into(),
        project: "gitpod".into(),
        username: "robot$gitpod-push".into(),
        password: Secret::new(password),
    });

    let spec = ReferenceArchitecture::from_yaml(
        "cloud: aws\nname: gp\ndomain: gitpod.example.com\n\
         certificates: {email: ops@example.com}\nregistry: {mode: managed}\n",
    )?;
    let clock = Arc::new(TokioClock::new());
    let sim = Arc::new(SimCloud::new(clock.clone(), LatencyProfile::instant()));
    let providers = Providers::builder()
        .cluster(sim.clone())
        .dns(sim.clone())
        .object_store(sim.clone())
        .registry(registry)
        .database(sim.clone())
        .build()?;
    let engine = Engine::builder(providers).clock(clock).build()?;

    let plan = engine.plan(&spec).await?;
    println!("{plan}");
    let report = engine.apply(&plan).await?.into_result()?;
    let pushes_to = match report.outputs.registry() {
        Some(RegistryOutput::External { url, .. }) => url.clone(),
        other => {
            return Err(Error::internal(format!(
                "unexpected registry output {other:?}"
            )))
        }
    };
    println!("Gitpod pushes workspace images to {pushes_to}");
    // Nothing of the registry went to the simulated cloud.
    if sim
        .resources()
        .iter()
        .any(|id| id.to_string().starts_with("registry/"))
    {
        return Err(Error::internal(
            "the registry was routed to the simulated cloud",
        ));
    }
    let _ = engine.destroy(&spec).await?.into_result()?;
    println!("destroyed; the registry itself was left alone");
    Ok(())
}

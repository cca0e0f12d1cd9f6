//! Account preparation on AWS: nothing to create; the step checks that the
//! credentials, account and region are the ones the spec is for.

use gitpod_refarch::provider::{Observed, Progress};
use gitpod_refarch::resource::{FoundationSpec, Output};
use gitpod_refarch::{Error, Result};

use crate::context::Context;

fn actual(c: &Context, d: &FoundationSpec) -> FoundationSpec {
    let mut a = d.clone();
    // The region is the provider's; labels have no home on an account.
    a.region = c.region.clone();
    a
}

/// The account as it is (always present).
pub async fn observe(c: &Context, d: &FoundationSpec) -> Result<Option<Observed<FoundationSpec>>> {
    Ok(Some(Observed::ready(
        actual(c, d),
        Some(Output::Foundation {
            account: c.account.clone(),
        }),
    )))
}

/// Check region; the account was checked when the provider connected.
pub async fn ensure(c: &Context, d: &FoundationSpec) -> Result<Progress> {
    if d.region != c.region {
        return Err(Error::invalid_input(format!(
            "the spec's region is {}, the AWS provider is configured for {}",
            d.region, c.region
        )));
    }
    Ok(Progress::Done(Some(Output::Foundation {
        account: c.account.clone(),
    })))
}

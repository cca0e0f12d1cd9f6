//! What every resource module shares: the SDK clients, the account facts found at
//! connect, the clock and retry policy for waits inside a step, and the tag helper.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gitpod_refarch::engine::{Clock, RetryPolicy};
use gitpod_refarch::plan::INSTALLATION_LABEL;
use gitpod_refarch::provider::Operation;
use gitpod_refarch::resource::ResourceId;

/// The SDK clients, shared by every resource module.
#[derive(Debug, Clone)]
pub struct Clients {
    /// EC2 (VPC).
    pub ec2: aws_sdk_ec2::Client,
    /// EKS.
    pub eks: aws_sdk_eks::Client,
    /// IAM.
    pub iam: aws_sdk_iam::Client,
    /// RDS.
    pub rds: aws_sdk_rds::Client,
    /// Route53.
    pub route53: aws_sdk_route53::Client,
    /// S3 (path-style when an endpoint is overridden).
    pub s3: aws_sdk_s3::Client,
    /// ECR.
    pub ecr: aws_sdk_ecr::Client,
    /// STS.
    pub sts: aws_sdk_sts::Client,
}

/// Facts every module needs.
#[derive(Debug, Clone)]
pub struct Context {
    /// Clients.
    pub clients: Clients,
    /// Region.
    pub region: String,
    /// Account id.
    pub account: String,
    /// Caller ARN (granted cluster admin).
    pub caller_arn: String,
    /// Endpoint override, if any.
    pub endpoint_url: Option<String>,
    /// Poll interval for pending operations.
    pub poll_interval: Duration,
    /// The clock waits inside a step sleep on.
    pub clock: Arc<dyn Clock>,
    /// The policy of retries inside a step.
    pub retry: RetryPolicy,
    /// The credentials provider of the loaded configuration, for presigning EKS
    /// tokens (see [`crate::access`]).
    pub credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
}

impl Context {
    /// The S3 endpoint host Gitpod should use.
    pub fn s3_endpoint(&self) -> String {
        match &self.endpoint_url {
            Some(url) => url
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string(),
            None => format!("s3.{}.amazonaws.com", self.region),
        }
    }

    /// An operation to poll after the configured interval.
    pub fn op(&self, id: impl Into<String>, resource: &ResourceId) -> Operation {
        Operation::new(id, resource.clone()).poll_after(self.poll_interval)
    }
}

/// Tags every resource carries: the installation label plus the spec's labels.
pub fn tags_of(labels: &BTreeMap<String, String>, installation: &str) -> BTreeMap<String, String> {
    let mut t = labels.clone();
    t.insert(INSTALLATION_LABEL.to_string(), installation.to_string());
    t
}

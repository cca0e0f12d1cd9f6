//! Kubernetes API tokens for AKS clusters: Entra ID access tokens for the AKS AAD
//! server application, as they go in the `Authorization: Bearer` header of a cluster
//! with AKS-managed Entra ID integration.
//!
//! This is what `kubelogin` does for such clusters, without `az`, `kubelogin` or a
//! kubeconfig file: ask Entra ID for a token whose scope is
//! [`AKS_SCOPE`] (the well-known *Azure Kubernetes Service AAD Server*
//! application, [`AKS_SERVER_APP_ID`]), for any identity
//! `azure_identity` can authenticate: a service principal with a client secret
//! ([`AksCredentials::client_secret`]), a pod's Workload Identity
//! ([`AksCredentials::workload_identity`]), a managed identity
//! ([`AksCredentials::managed_identity`]) or any other
//! [`TokenCredential`] ([`AksCredentials::new`]).
//!
//! The token is the same for every AKS cluster the identity may reach: the audience is
//! the AKS server application, not one cluster, so the cluster's output is only
//! checked to be one. The token is handed out with its real expiry; the credentials of
//! `azure_identity` cache it and fetch a new one when less than five minutes of it
//! remain, so asking again is cheap and callers that refresh before the expiry get a
//! fresh token.
//!
//! [`AccessToken::user`] is always `None`: AKS maps the Entra identity (the token's
//! `oid` claim) to a Kubernetes user itself, and the name it uses depends on the
//! cluster's configuration, so this module does not guess it. Kubernetes RBAC (or
//! Azure RBAC for Kubernetes) must grant that identity its rights.
//!
//! Errors: a rejected or misconfigured identity is
//! [`ErrorKind::Credentials`]; a network failure, a timeout, or a `408` or `5xx` answer
//! from the token endpoint is [`ErrorKind::Transient`]; a `429` is
//! [`ErrorKind::Throttled`]. `azure_identity` has already retried those (its default
//! exponential policy, at most a minute) before the error reaches the caller.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind as AzureErrorKind;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{ClientOptions, Context, Request, StatusCode};
use azure_core::time::OffsetDateTime;
use azure_identity::{
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use gitpod_refarch::provider::{AccessToken, ClusterCredentials};
use gitpod_refarch::resource::Output;
use gitpod_refarch::{Error, ErrorKind, Result, Secret};

/// The application (client) id of the *Azure Kubernetes Service AAD Server*
/// application, the audience of the tokens AKS-managed Entra ID clusters accept (the
/// `--server-id` `kubelogin` uses for them).
pub const AKS_SERVER_APP_ID: &str = "6dae42f8-4368-4678-94ff-3960e28e3630";

/// The scope asked of Entra ID for an AKS token: [`AKS_SERVER_APP_ID`]`/.default`.
pub const AKS_SCOPE: &str = "6dae42f8-4368-4678-94ff-3960e28e3630/.default";

/// Entra ID tokens for AKS clusters, from an `azure_identity` credential.
///
/// Implements [`ClusterCredentials`]: see the [module documentation](self) for what the
/// token is, when it expires, and why it carries no user name. `Debug` shows the scope
/// and the credential's own `Debug`, which for `azure_identity`'s credentials names
/// the client and the endpoint but never a secret.
#[derive(Clone)]
pub struct AksCredentials {
    credential: Arc<dyn TokenCredential>,
    scope: String,
}

impl fmt::Debug for AksCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AksCredentials")
            .field("scope", &self.scope)
            .field("credential", &self.credential)
            .finish()
    }
}

impl AksCredentials {
    /// Tokens for AKS from any credential (scope [`AKS_SCOPE`]).
    pub fn new(credential: Arc<dyn TokenCredential>) -> Self {
        AksCredentials {
            credential,
            scope: AKS_SCOPE.to_string(),
        }
    }

    /// Tokens for a service principal with a client secret (`azure_identity`'s
    /// `ClientSecretCredential`, the OAuth 2.0 client-credentials grant at
    /// `{authority_host}/{tenant_id}/oauth2/v2.0/token`).
    ///
    /// `authority_host` is the Entra ID endpoint, for sovereign clouds (for example
    /// `https://login.microsoftonline.us`) or a private test authority. It must be
    /// `https`. When `None`, the environment variable `AZURE_AUTHORITY_HOST` is used
    /// if set, and the public cloud's `https://login.microsoftonline.com` otherwise.
    ///
    /// Nothing is sent before the first token is asked for. A malformed tenant id, an
    /// empty client id or secret, or an authority host that is not an `https` URL is an
    /// [`ErrorKind::Credentials`] error.
    pub fn client_secret(
        tenant_id: &str,
        client_id: impl Into<String>,
        secret: Secret,
        authority_host: Option<String>,
    ) -> Result<Self> {
        Self::client_secret_with_options(
            tenant_id,
            client_id,
            secret,
            authority_host,
            ClientOptions::default(),
        )
    }

    /// [`client_secret`](Self::client_secret) with the HTTP pipeline's options: retries,
    /// logging, or the transport (an [`HttpClient`](azure_core::http::HttpClient) of
    /// one's own, for a proxy or for tests that play the token endpoint). The
    /// authority host must still be `https`; a test transport sees the `https` request
    /// and may send it wherever it likes.
    ///
    /// `authority_host`, when given, replaces `client_options.cloud`; otherwise
    /// `client_options.cloud` (for example Azure Government or Azure China) decides the
    /// authority host, and when that is `None` too, `AZURE_AUTHORITY_HOST` or the
    /// public cloud does, as for [`client_secret`](Self::client_secret).
    pub fn client_secret_with_options(
        tenant_id: &str,
        client_id: impl Into<String>,
        secret: Secret,
        authority_host: Option<String>,
        client_options: ClientOptions,
    ) -> Result<Self> {
        let mut client_options = with_status_policy(client_options);
        if let Some(host) = authority_host {
            client_options.cloud = Some(Arc::new(custom_cloud(host)));
        }
        let credential = ClientSecretCredential::new(
            tenant_id,
            client_id.into(),
            azure_core::credentials::Secret::new(secret.expose().clone()),
            Some(ClientSecretCredentialOptions { client_options }),
        )
        .map_err(|e| credentials_error("cannot set up the Entra ID client-secret credential", e))?;
        Ok(Self::new(credential))
    }

    /// Tokens for the Entra Workload Identity of the pod this runs in
    /// (`azure_identity`'s `WorkloadIdentityCredential`): the Kubernetes service
    /// account token in `AZURE_FEDERATED_TOKEN_FILE` is exchanged for an Entra ID token
    /// of the identity `AZURE_CLIENT_ID` in tenant `AZURE_TENANT_ID`, at
    /// `AZURE_AUTHORITY_HOST` (or the public cloud). The AKS workload identity webhook
    /// sets all four on pods whose service account is annotated for it.
    ///
    /// A missing variable is an [`ErrorKind::Credentials`] error; the token file is
    /// read when a token is asked for.
    pub fn workload_identity() -> Result<Self> {
        let options = WorkloadIdentityCredentialOptions {
            credential_options: ClientAssertionCredentialOptions {
                client_options: with_status_policy(ClientOptions::default()),
            },
            ..Default::default()
        };
        let credential = WorkloadIdentityCredential::new(Some(options)).map_err(|e| {
            credentials_error(
                "cannot set up the Entra Workload Identity credential (are AZURE_TENANT_ID, \
                 AZURE_CLIENT_ID and AZURE_FEDERATED_TOKEN_FILE set?)",
                e,
            )
        })?;
        Ok(Self::new(credential))
    }

    /// Tokens for the managed identity of the Azure VM (the instance metadata
    /// service) or App Service this runs on (`azure_identity`'s
    /// `ManagedIdentityCredential`): the system-assigned identity when
    /// `user_assigned_client_id` is `None`, else the user-assigned identity with that
    /// client id.
    ///
    /// Nothing is sent before the first token is asked for; off Azure, that request
    /// fails (an [`ErrorKind::Transient`] or [`ErrorKind::Credentials`] error).
    pub fn managed_identity(user_assigned_client_id: Option<String>) -> Result<Self> {
        let options = ManagedIdentityCredentialOptions {
            user_assigned_id: user_assigned_client_id.map(UserAssignedId::ClientId),
            ..Default::default()
        };
        let credential = ManagedIdentityCredential::new(Some(options))
            .map_err(|e| credentials_error("cannot set up the managed identity credential", e))?;
        Ok(Self::new(credential))
    }

    /// Ask for tokens of another AKS server application: `{app_id}/.default`. Only for
    /// clusters with the legacy (not AKS-managed) Entra ID integration, whose server
    /// application is the cluster owner's own.
    #[must_use]
    pub fn with_server_app_id(mut self, app_id: &str) -> Self {
        self.scope = format!("{app_id}/.default");
        self
    }

    /// The scope tokens are asked for ([`AKS_SCOPE`] unless
    /// [`with_server_app_id`](Self::with_server_app_id) changed it).
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// A bearer token for AKS, valid until its Entra ID expiry.
    pub async fn token(&self) -> Result<AccessToken> {
        let token = self
            .credential
            .get_token(&[self.scope.as_str()], None)
            .await
            .map_err(|e| {
                Error::new(
                    classify(&e),
                    format!(
                        "cannot get an Entra ID token for AKS (scope {})",
                        self.scope
                    ),
                )
                .with_source(e)
            })?;
        let expires_at = system_time(token.expires_on).ok_or_else(|| {
            Error::new(
                ErrorKind::Credentials,
                "the Entra ID token's expiry is out of the system clock's range",
            )
        })?;
        Ok(AccessToken::bearer(
            Secret::new(token.token.secret().to_string()),
            Some(expires_at),
        ))
    }
}

#[async_trait]
impl ClusterCredentials for AksCredentials {
    async fn cluster_token(&self, cluster: &Output) -> Result<AccessToken> {
        let Output::Cluster { .. } = cluster else {
            return Err(Error::internal(
                "an AKS token needs the cluster's output, another output was given",
            ));
        };
        self.token().await
    }
}

/// A custom cloud whose only setting is the Entra ID authority host.
fn custom_cloud(authority_host: String) -> azure_core::cloud::CloudConfiguration {
    let mut custom = azure_core::cloud::CustomConfiguration::default();
    custom.authority_host = authority_host;
    custom.into()
}

/// `options` with [`StatusAsError`] as the last per-call policy.
fn with_status_policy(mut options: ClientOptions) -> ClientOptions {
    options.per_call_policies.push(Arc::new(StatusAsError));
    options
}

fn credentials_error(message: &str, e: azure_core::Error) -> Error {
    Error::new(ErrorKind::Credentials, message).with_source(e)
}

/// Turns a token endpoint's final `408`, `429` or `5xx` answer (after the retry policy
/// gave up) into an `HttpResponse` error that keeps the status.
///
/// `azure_identity` parses every error answer as Entra ID's JSON error; a gateway's
/// HTML `502` would become a data conversion error without its status, and could not
/// be told from a rejected secret. This policy sits before the retry policy, so it sees
/// only the last answer.
#[derive(Debug)]
struct StatusAsError;

#[async_trait]
impl Policy for StatusAsError {
    // `Context<'_>` here would make the lifetime early-bound under async-trait, unlike
    // the trait's elided one.
    #[allow(elided_lifetimes_in_paths)]
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        let Some((first, rest)) = next.split_first() else {
            return Err(azure_core::Error::with_message(
                AzureErrorKind::Other,
                "no transport policy after the status policy",
            ));
        };
        let response = first.send(ctx, request, rest).await?;
        let status = response.status();
        if !is_transient_status(status) && status != StatusCode::TooManyRequests {
            return Ok(response);
        }
        let raw = response.try_into_raw_response().await?;
        let mut message = format!(
            "the Entra ID token endpoint answered HTTP {}",
            u16::from(status)
        );
        if let Some(description) = entra_error_description(raw.body()) {
            message.push_str(": ");
            message.push_str(&description);
        }
        Err(azure_core::Error::with_message(
            AzureErrorKind::HttpResponse {
                status,
                error_code: None,
                raw_response: Some(Box::new(raw)),
            },
            message,
        ))
    }
}

/// The `error_description` of an Entra ID JSON error answer, if the body is one.
fn entra_error_description(body: &[u8]) -> Option<String> {
    let json: azure_core::Value = azure_core::json::from_json(body).ok()?;
    json.get("error_description")?
        .as_str()
        .filter(|d| !d.is_empty())
        .map(str::to_string)
}

fn is_transient_status(status: StatusCode) -> bool {
    status == StatusCode::RequestTimeout || status.is_server_error()
}

/// The kind of a failed token request: the first HTTP status or transport failure in
/// the error's chain decides (`azure_identity` wraps every failure in a `Credential`
/// error); anything else is a credentials problem.
fn classify(error: &azure_core::Error) -> ErrorKind {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(azure) = e.downcast_ref::<azure_core::Error>() {
            match azure.kind() {
                AzureErrorKind::HttpResponse { status, .. } => {
                    return if *status == StatusCode::TooManyRequests {
                        ErrorKind::Throttled
                    } else if is_transient_status(*status) {
                        ErrorKind::Transient
                    } else {
                        ErrorKind::Credentials
                    };
                }
                AzureErrorKind::Io | AzureErrorKind::Connection => return ErrorKind::Transient,
                _ => {}
            }
        }
        current = e.source();
    }
    ErrorKind::Credentials
}

/// [`classify`] for the ARM client's transport and token failures.
pub(crate) fn classify_azure(error: &azure_core::Error) -> ErrorKind {
    classify(error)
}

/// `t` as a [`SystemTime`], if the system clock can represent it.
fn system_time(t: OffsetDateTime) -> Option<SystemTime> {
    let secs = t.unix_timestamp();
    let nanos = t.nanosecond();
    if secs >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs.unsigned_abs(), nanos))
    } else {
        SystemTime::UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))?
            .checked_add(Duration::from_nanos(u64::from(nanos)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn the_scope_is_the_aks_server_application() {
        assert_eq!(AKS_SCOPE, format!("{AKS_SERVER_APP_ID}/.default"));
    }

    #[test]
    fn expiries_convert_both_sides_of_the_epoch() {
        let later = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
            + azure_core::time::Duration::nanoseconds(5);
        assert_eq!(
            system_time(later).unwrap(),
            SystemTime::UNIX_EPOCH + Duration::new(1_800_000_000, 5)
        );
        let earlier = OffsetDateTime::from_unix_timestamp(-10).unwrap()
            + azure_core::time::Duration::milliseconds(250);
        assert_eq!(
            system_time(earlier).unwrap(),
            SystemTime::UNIX_EPOCH - Duration::from_millis(9_750)
        );
    }

    #[test]
    fn errors_are_classified_by_the_first_status_or_transport_failure() {
        let http = |status| {
            azure_core::Error::with_message(
                AzureErrorKind::HttpResponse {
                    status,
                    error_code: None,
                    raw_response: None,
                },
                "answer",
            )
        };
        let wrapped = |inner: azure_core::Error| {
            azure_core::Error::with_error(AzureErrorKind::Credential, inner, "failed")
        };
        assert_eq!(
            classify(&wrapped(http(StatusCode::ServiceUnavailable))),
            ErrorKind::Transient
        );
        assert_eq!(
            classify(&wrapped(http(StatusCode::RequestTimeout))),
            ErrorKind::Transient
        );
        assert_eq!(
            classify(&wrapped(http(StatusCode::TooManyRequests))),
            ErrorKind::Throttled
        );
        assert_eq!(
            classify(&wrapped(http(StatusCode::Unauthorized))),
            ErrorKind::Credentials
        );
        let io = azure_core::Error::with_message(AzureErrorKind::Io, "reset");
        assert_eq!(classify(&wrapped(io)), ErrorKind::Transient);
        let other = azure_core::Error::with_message(AzureErrorKind::Credential, "no scopes");
        assert_eq!(classify(&other), ErrorKind::Credentials);
    }
}

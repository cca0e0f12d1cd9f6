//! Identities, federated credentials, role assignments and ACR on the fake.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use gitpod_refarch_fake_azure::{FakeAzure, FakeConfig, DEFAULT_CLIENT_ID};
use serde_json::{json, Value};

fn identity_path(name: &str) -> String {
    format!(
        "{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}",
        rg_path("rg-a")
    )
}

fn fic_body(subject: &str) -> Value {
    json!({"properties": {"issuer": "https://westeurope.oic.prod-aks.azure.com/t/c/", "subject": subject, "audiences": ["api://AzureADTokenExchange"]}})
}

#[tokio::test]
async fn identities_and_federated_credentials() {
    let (fake, c) = ready().await;
    c.rg("rg-a").await;
    let id = q(&identity_path("id-a-cert-manager"), MSI);
    let r = c
        .ok("PUT", &id, Some(json!({"location": "westeurope"})))
        .await;
    assert_eq!(r.status, 201);
    let props = r.body["properties"].clone();
    for k in ["principalId", "clientId", "tenantId"] {
        assert!(props[k].is_string(), "{k}");
    }
    assert_eq!(
        c.ok("PUT", &id, Some(json!({"location": "westeurope"})))
            .await
            .body["properties"],
        props
    );
    assert_eq!(
        c.call(
            "PUT",
            &q(&identity_path("a"), MSI),
            Some(json!({"location": "westeurope"}))
        )
        .await
        .status,
        400
    );

    let fic = |n: &str| {
        q(
            &format!(
                "{}/federatedIdentityCredentials/{n}",
                identity_path("id-a-cert-manager")
            ),
            MSI,
        )
    };
    assert_eq!(
        c.ok(
            "PUT",
            &fic("cert-manager"),
            Some(fic_body("system:serviceaccount:cert-manager:cert-manager"))
        )
        .await
        .status,
        201
    );
    assert_eq!(
        c.ok(
            "PUT",
            &fic("cert-manager"),
            Some(fic_body("system:serviceaccount:cert-manager:cert-manager"))
        )
        .await
        .status,
        200
    );
    assert_eq!(
        c.call("PUT", &fic("-x"), Some(fic_body("s"))).await.status,
        400
    );
    assert_eq!(
        c.call(
            "PUT",
            &fic("nosubject"),
            Some(json!({"properties": {"issuer": "https://x/", "audiences": ["a"]}}))
        )
        .await
        .status,
        400
    );
    assert_eq!(
        c.call(
            "PUT",
            &fic("noaud"),
            Some(json!({"properties": {"issuer": "https://x/", "subject": "s", "audiences": []}}))
        )
        .await
        .status,
        400
    );
    assert_eq!(
        c.call(
            "PUT",
            &fic("dup"),
            Some(fic_body("system:serviceaccount:cert-manager:cert-manager"))
        )
        .await
        .status,
        400
    );

    // Two writes at once on one identity: one of them is refused.
    let (one, two) = (fic("one"), fic("two"));
    let (a, b) = tokio::join!(
        c.call("PUT", &one, Some(fic_body("s1"))),
        c.call("PUT", &two, Some(fic_body("s2"))),
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [201, 409]);
    let refused = if a.status == 409 { &a } else { &b };
    assert_eq!(
        refused.code(),
        "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity"
    );
    // Configured conflicts.
    fake.set_fic_conflicts(1);
    assert_eq!(
        c.call("PUT", &fic("three"), Some(fic_body("s3")))
            .await
            .status,
        409
    );
    assert_eq!(
        c.call("PUT", &fic("three"), Some(fic_body("s3")))
            .await
            .status,
        201
    );

    // At most 20 per identity.
    let existing = c
        .get(&q(
            &format!(
                "{}/federatedIdentityCredentials",
                identity_path("id-a-cert-manager")
            ),
            MSI,
        ))
        .await["value"]
        .as_array()
        .unwrap()
        .len();
    for i in existing..20 {
        c.ok(
            "PUT",
            &fic(&format!("fic{i}")),
            Some(fic_body(&format!("sub{i}"))),
        )
        .await;
    }
    let r = c.call("PUT", &fic("fic21"), Some(fic_body("sub21"))).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("20"));
    assert_eq!(c.ok("DELETE", &id, None).await.status, 200);
    assert_eq!(c.call("GET", &fic("cert-manager"), None).await.status, 404);
    fake.shutdown().await;
}

const DNS_CONTRIBUTOR: &str = "befefa01-2a29-4197-83a8-272ff33ce314";

fn ra(scope: &str, name: &str) -> String {
    q(
        &format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"),
        AUTHZ,
    )
}

fn ra_body(principal: &str) -> Value {
    json!({"properties": {"roleDefinitionId": format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{DNS_CONTRIBUTOR}"),
        "principalId": principal, "principalType": "ServicePrincipal"}})
}

#[tokio::test]
async fn role_assignments_conflict_and_wait_for_replication() {
    let (fake, c) = start(
        FakeConfig::default()
            .with_providers_registered(true)
            .with_principal_not_found_attempts(2),
    )
    .await;
    c.rg("rg-a").await;
    let zone = format!(
        "{}/providers/Microsoft.Network/dnszones/example.com",
        rg_path("rg-a")
    );
    c.ok("PUT", &q(&zone, DNS), Some(json!({"location": "global"})))
        .await;
    let principal = c
        .ok(
            "PUT",
            &q(&identity_path("id-a"), MSI),
            Some(json!({"location": "westeurope"})),
        )
        .await
        .body["properties"]["principalId"]
        .as_str()
        .unwrap()
        .to_string();
    let name = "0c7d1f3e-2b4a-5c6d-8e9f-0a1b2c3d4e5f";
    let other = "9f8e7d6c-5b4a-5c3d-9e1f-0a1b2c3d4e5f";

    let r = c
        .call(
            "PUT",
            &ra(&zone, name),
            Some(ra_body("11111111-2222-3333-4444-555555555555")),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "PrincipalNotFound"));
    for _ in 0..2 {
        let r = c
            .call("PUT", &ra(&zone, name), Some(ra_body(&principal)))
            .await;
        assert_eq!((r.status, r.code()), (400, "PrincipalNotFound"));
    }
    let r = c
        .ok("PUT", &ra(&zone, name), Some(ra_body(&principal)))
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["properties"]["scope"], zone);
    assert_eq!(
        c.ok("PUT", &ra(&zone, name), Some(ra_body(&principal)))
            .await
            .status,
        200
    );
    let r = c
        .call("PUT", &ra(&zone, other), Some(ra_body(&principal)))
        .await;
    assert_eq!((r.status, r.code()), (409, "RoleAssignmentExists"));
    assert_eq!(
        c.call("PUT", &ra(&zone, "not-a-guid"), Some(ra_body(&principal)))
            .await
            .code(),
        "InvalidRoleAssignmentId"
    );
    let mut unknown_role = ra_body(&principal);
    unknown_role["properties"]["roleDefinitionId"] = json!(format!(
        "/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{other}"
    ));
    assert_eq!(
        c.call("PUT", &ra(&zone, other), Some(unknown_role))
            .await
            .code(),
        "RoleDefinitionDoesNotExist"
    );
    // The deployer's own principal (its token's oid) is known at once.
    let me = FakeAzure::client_object_id(DEFAULT_CLIENT_ID);
    c.ok("PUT", &ra(&rg_path("rg-a"), other), Some(ra_body(&me)))
        .await;

    // Lists: by principal, at and below the scope; atScope() only at and above.
    let filter = |scope: &str, f: &str| {
        format!("{scope}/providers/Microsoft.Authorization/roleAssignments?api-version={AUTHZ}&$filter={f}")
    };
    let by_principal = c
        .get(&filter(&zone, &format!("principalId%20eq%20'{principal}'")))
        .await;
    assert_eq!(by_principal["value"].as_array().unwrap().len(), 1);
    assert_eq!(by_principal["value"][0]["name"], name);
    let rg_all = c
        .get(&q(
            &format!(
                "{}/providers/Microsoft.Authorization/roleAssignments",
                rg_path("rg-a")
            ),
            AUTHZ,
        ))
        .await;
    assert_eq!(rg_all["value"].as_array().unwrap().len(), 2);
    let rg_at = c.get(&filter(&rg_path("rg-a"), "atScope()")).await;
    assert_eq!(rg_at["value"].as_array().unwrap().len(), 1);
    assert_eq!(c.ok("DELETE", &ra(&zone, name), None).await.status, 200);
    assert_eq!(c.call("DELETE", &ra(&zone, name), None).await.status, 204);
    assert_eq!(
        c.call("GET", &ra(&zone, name), None).await.code(),
        "RoleAssignmentNotFound"
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn registries_names_tokens_and_credentials() {
    let other_sub = "7a6b5c4d-3e2f-4a1b-9c8d-000000000002";
    let config = FakeConfig::default()
        .with_providers_registered(true)
        .with_polls_to_finish(1)
        .with_subscriptions([SUB, other_sub])
        .with_taken_registry_names(["takenreg"]);
    let (fake, c) = start(config).await;
    c.rg("rg-a").await;
    let check = q(
        &format!(
            "/subscriptions/{SUB}/providers/Microsoft.ContainerRegistry/checkNameAvailability"
        ),
        ACR,
    );
    let ty = "Microsoft.ContainerRegistry/registries";
    let r = c
        .ok(
            "POST",
            &check,
            Some(json!({"name": "takenreg", "type": ty})),
        )
        .await;
    assert_eq!(
        (r.body["nameAvailable"].as_bool(), r.body["reason"].as_str()),
        (Some(false), Some("AlreadyExists"))
    );
    assert_eq!(
        c.ok("POST", &check, Some(json!({"name": "ab-c", "type": ty})))
            .await
            .body["reason"],
        "Invalid"
    );
    assert_eq!(
        c.ok(
            "POST",
            &check,
            Some(json!({"name": "gitpodreg1", "type": ty}))
        )
        .await
        .body["nameAvailable"],
        true
    );

    let reg = format!(
        "{}/providers/Microsoft.ContainerRegistry/registries/gitpodreg1",
        rg_path("rg-a")
    );
    let body = json!({"location": "westeurope", "sku": {"name": "Standard"}, "properties": {"adminUserEnabled": false}});
    assert_eq!(
        c.call(
            "PUT",
            &q(
                &format!(
                    "{}/providers/Microsoft.ContainerRegistry/registries/takenreg",
                    rg_path("rg-a")
                ),
                ACR
            ),
            Some(body.clone())
        )
        .await
        .status,
        409
    );
    let r = c.put_done(&q(&reg, ACR), body.clone()).await;
    assert_eq!(r.status, 201);
    let got = c.get(&q(&reg, ACR)).await;
    assert_eq!(got["properties"]["loginServer"], "gitpodreg1.azurecr.io");
    assert_eq!(got["sku"]["tier"], "Standard");
    assert_eq!(got["properties"]["provisioningState"], "Succeeded");
    assert_eq!(
        c.ok(
            "POST",
            &check,
            Some(json!({"name": "GitpodReg1", "type": ty}))
        )
        .await
        .body["nameAvailable"],
        false
    );
    // Global: another subscription cannot take the name.
    c.ok(
        "PUT",
        &q(
            &format!("/subscriptions/{other_sub}/resourceGroups/rg-b"),
            RES,
        ),
        Some(json!({"location": "westeurope"})),
    )
    .await;
    let r = c.call("PUT", &q(&format!("/subscriptions/{other_sub}/resourceGroups/rg-b/providers/Microsoft.ContainerRegistry/registries/gitpodreg1"), ACR), Some(body)).await;
    assert_eq!((r.status, r.code()), (409, "AlreadyInUse"));

    let r = c
        .call("POST", &q(&format!("{reg}/listCredentials"), ACR), None)
        .await;
    assert_eq!(r.status, 400);
    let sm = format!("{reg}/scopeMaps/gitpod-push");
    c.put_done(&q(&sm, ACR), json!({"properties": {"actions": ["repositories/base-images/content/read", "repositories/base-images/content/write"]}})).await;
    assert_eq!(
        c.call(
            "PUT",
            &q(&format!("{reg}/scopeMaps/bad-map"), ACR),
            Some(json!({"properties": {"actions": []}}))
        )
        .await
        .status,
        400
    );
    let token = format!("{reg}/tokens/gitpod-push");
    c.put_done(
        &q(&token, ACR),
        json!({"properties": {"scopeMapId": sm, "status": "enabled"}}),
    )
    .await;
    let r = c
        .ok(
            "POST",
            &q(&format!("{reg}/generateCredentials"), ACR),
            Some(json!({"tokenId": token, "name": "password1"})),
        )
        .await;
    assert_eq!(r.status, 202);
    let done = c.wait_location(&r.header("location").unwrap()).await;
    assert_eq!(done.status, 200);
    assert_eq!(done.body["username"], "gitpod-push");
    assert!(done.body["passwords"][0]["value"].as_str().unwrap().len() > 20);
    let stored = c.get(&q(&token, ACR)).await;
    assert_eq!(
        stored["properties"]["credentials"]["passwords"][0]["name"],
        "password1"
    );
    assert!(stored["properties"]["credentials"]["passwords"][0]
        .get("value")
        .is_none());
    let recorded = fake
        .calls()
        .into_iter()
        .rev()
        .find(|k| k.status == 200 && k.response_body.get("passwords").is_some())
        .unwrap();
    assert_eq!(
        recorded.response_body["passwords"][0]["value"],
        "<redacted>"
    );
    fake.shutdown().await;
}

/// With `role_list_delay`, a new assignment is missing from its first lists (a GET by
/// name sees it): a client that lists before it writes meets `RoleAssignmentExists`.
#[tokio::test]
async fn new_role_assignments_reach_lists_late_when_asked() {
    let (fake, c) = start(
        FakeConfig::default()
            .with_providers_registered(true)
            .with_role_list_delay(2),
    )
    .await;
    c.rg("rg-a").await;
    let me = FakeAzure::client_object_id(DEFAULT_CLIENT_ID);
    let name = "0c7d1f3e-2b4a-5c6d-8e9f-0a1b2c3d4e5f";
    let scope = rg_path("rg-a");
    assert_eq!(
        c.ok("PUT", &ra(&scope, name), Some(ra_body(&me)))
            .await
            .status,
        201
    );
    let list = format!(
        "{scope}/providers/Microsoft.Authorization/roleAssignments?api-version={AUTHZ}&$filter=principalId%20eq%20'{me}'"
    );
    let count = |v: Value| v["value"].as_array().unwrap().len();
    assert_eq!(count(c.get(&list).await), 0);
    assert_eq!(c.get(&ra(&scope, name)).await["name"], name);
    let other = "9f8e7d6c-5b4a-5c3d-9e1f-0a1b2c3d4e5f";
    let r = c.call("PUT", &ra(&scope, other), Some(ra_body(&me))).await;
    assert_eq!((r.status, r.code()), (409, "RoleAssignmentExists"));
    assert_eq!(count(c.get(&list).await), 0);
    assert_eq!(count(c.get(&list).await), 1);
    assert_eq!(count(c.get(&list).await), 1);
    fake.shutdown().await;
}

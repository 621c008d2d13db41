//! Stacks in moto's CloudFormation, as a product launch leaves them while it waits for its
//! custom resource: a stack in a member account whose `Custom::…` resource is
//! `CREATE_IN_PROGRESS`. moto serves `DescribeStackResource` for it, which is what the catalog
//! function reads (through the member role) to verify a request before acting on it.
//!
//! moto creates a custom resource only when its `ServiceToken` names a Lambda function in the
//! stack's own account (it then tries to invoke it, which fails without Docker and leaves the
//! resource in progress, as CloudFormation does while it waits for the answer). So the helper
//! creates a stand-in function there; moto cannot show a resource `UPDATE_IN_PROGRESS` or
//! `DELETE_IN_PROGRESS` (it completes those at once): those states are covered by the
//! verification's table test.

use std::io;

use hyper::Method;

use crate::http::{fake_sigv4, form_encode, send, xml_text};

/// The stand-in function's name in member accounts.
pub const STAND_IN_FUNCTION: &str = "ct-entitlements-catalog-stand-in";

async fn call(
    moto: &str,
    account: &str,
    service: &str,
    path: &str,
    content_type: &str,
    body: String,
) -> io::Result<String> {
    let auth = fake_sigv4("AKIDLOCALWORLD", service);
    let response = send(
        Method::POST,
        &format!("{moto}{path}"),
        &[
            ("x-moto-account-id", account),
            ("authorization", &auth),
            ("content-type", content_type),
        ],
        body,
    )
    .await?;
    if !response.is_success() {
        return Err(io::Error::other(format!(
            "moto {service} {path}: HTTP {}: {}",
            response.status,
            response.text()
        )));
    }
    Ok(response.text())
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Creates a stack named `name` in `account` whose resource `logical_id` of `resource_type`
/// (with `properties`) stays `CREATE_IN_PROGRESS`; returns the stack ARN.
pub async fn launch_stack(
    moto: &str,
    account: &str,
    name: &str,
    logical_id: &str,
    resource_type: &str,
    properties: serde_json::Value,
) -> io::Result<String> {
    let form_type = "application/x-www-form-urlencoded";
    // A role and a function for moto's custom-resource model (idempotent enough: existing is fine).
    let role = call(
        moto,
        account,
        "iam",
        "/",
        form_type,
        form(&[
            ("Action", "CreateRole"),
            ("Version", "2010-05-08"),
            ("RoleName", "ct-entitlements-stand-in"),
            ("AssumeRolePolicyDocument", "{}"),
        ]),
    )
    .await;
    if let Err(e) = &role {
        if !e.to_string().contains("EntityAlreadyExists") {
            return Err(io::Error::other(e.to_string()));
        }
    }
    let function = serde_json::json!({
        "FunctionName": STAND_IN_FUNCTION,
        "Runtime": "provided.al2023",
        "Role": format!("arn:aws:iam::{account}:role/ct-entitlements-stand-in"),
        "Handler": "bootstrap",
        // A zip holding one empty file named bootstrap.
        "Code": {"ZipFile": "UEsDBBQAAAAAAKpwhF0AAAAAAAAAAAAAAAAJAAAAYm9vdHN0cmFwUEsBAhQDFAAAAAAAqnCEXQAAAAAAAAAAAAAAAAkAAAAAAAAAAAAAAIABAAAAAGJvb3RzdHJhcFBLBQYAAAAAAQABADcAAAAnAAAAAAA="},
    });
    if let Err(e) = call(
        moto,
        account,
        "lambda",
        "/2015-03-31/functions",
        "application/json",
        function.to_string(),
    )
    .await
    {
        if !e.to_string().contains("ResourceConflictException") {
            return Err(e);
        }
    }
    let mut properties = properties;
    properties["ServiceToken"] = serde_json::json!(format!(
        "arn:aws:lambda:us-east-1:{account}:function:{STAND_IN_FUNCTION}"
    ));
    let template = serde_json::json!({
        "Resources": {logical_id: {"Type": resource_type, "Properties": properties}}
    });
    let created = call(
        moto,
        account,
        "cloudformation",
        "/",
        form_type,
        form(&[
            ("Action", "CreateStack"),
            ("Version", "2010-05-15"),
            ("StackName", name),
            ("TemplateBody", &template.to_string()),
        ]),
    )
    .await?;
    xml_text(&created, "StackId")
        .map(str::to_string)
        .ok_or_else(|| io::Error::other(format!("CreateStack answered no StackId: {created}")))
}

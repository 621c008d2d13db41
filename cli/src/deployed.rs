//! `--stack-name`: the configuration the deployed functions run with, read from the stack
//! (CloudFormation) and the account-lifecycle function (Lambda), so the CLI plans exactly what
//! they would.

use shared::error::aws_error;
use shared::error::Error;
use std::collections::BTreeMap;

/// The template's logical id of the function whose environment is the configuration.
pub const LIFECYCLE_FUNCTION: &str = "AccountLifecycleFunction";
/// The stack outputs the CLI reads.
pub const BACKFILL_QUEUE_OUTPUT: &str = "BackfillQueueUrl";
pub const ONBOARDING_QUEUE_OUTPUT: &str = "OnboardingQueueUrl";

/// A deployed stack as the CLI reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deployed {
    /// The configuration: what `shared::config::Config::from_lookup` reads.
    pub environment: BTreeMap<String, String>,
    /// The stack's outputs, by key.
    pub outputs: BTreeMap<String, String>,
}

/// Reads `stack_name`: its account-lifecycle function's environment and its outputs.
pub async fn read_stack(
    cfn: &aws_sdk_cloudformation::Client,
    lambda: &aws_sdk_lambda::Client,
    stack_name: &str,
) -> Result<Deployed, Error> {
    Ok(Deployed {
        environment: deployed_environment(cfn, lambda, stack_name).await?,
        outputs: stack_outputs(cfn, stack_name).await?,
    })
}

/// The configuration the deployed functions of `stack_name` run with: the environment of its
/// `AccountLifecycleFunction` (DescribeStackResource for the function's physical id, then
/// GetFunctionConfiguration).
///
/// This is the one place the deployed configuration is read. When the configuration moves
/// into a document (an environment variable naming it), resolve that document here, into the
/// same map, so every command keeps feeding one map to `Config::from_lookup`.
pub async fn deployed_environment(
    cfn: &aws_sdk_cloudformation::Client,
    lambda: &aws_sdk_lambda::Client,
    stack_name: &str,
) -> Result<BTreeMap<String, String>, Error> {
    let resource = cfn
        .describe_stack_resource()
        .stack_name(stack_name)
        .logical_resource_id(LIFECYCLE_FUNCTION)
        .send()
        .await
        .map_err(|e| aws_error("cloudformation", "DescribeStackResource", e))
        .map_err(|e| not_found_is_usage(e, stack_name))?;
    let function = resource
        .stack_resource_detail()
        .and_then(|d| d.physical_resource_id())
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            Error::Config(format!(
                "--stack-name {stack_name}: the stack has no created {LIFECYCLE_FUNCTION}"
            ))
        })?
        .to_string();
    let configuration = lambda
        .get_function_configuration()
        .function_name(&function)
        .send()
        .await
        .map_err(|e| aws_error("lambda", "GetFunctionConfiguration", e))?;
    Ok(environment_of(&configuration))
}

/// The environment variables of a function configuration (none: an empty map).
pub fn environment_of(
    configuration: &aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput,
) -> BTreeMap<String, String> {
    configuration
        .environment()
        .and_then(|e| e.variables())
        .map(|vars| vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// The outputs of `stack_name`, by key.
pub async fn stack_outputs(
    cfn: &aws_sdk_cloudformation::Client,
    stack_name: &str,
) -> Result<BTreeMap<String, String>, Error> {
    let out = cfn
        .describe_stacks()
        .stack_name(stack_name)
        .send()
        .await
        .map_err(|e| aws_error("cloudformation", "DescribeStacks", e))
        .map_err(|e| not_found_is_usage(e, stack_name))?;
    Ok(out
        .stacks()
        .iter()
        .flat_map(|s| s.outputs())
        .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
        .collect())
}

/// CloudFormation answers `ValidationError` for a stack (or resource) that does not exist: a
/// wrong `--stack-name`, a usage error.
fn not_found_is_usage(e: Error, stack_name: &str) -> Error {
    match &e {
        Error::Aws { code, message, .. } if code == "ValidationError" => {
            Error::Config(format!("--stack-name {stack_name}: {message}"))
        }
        _ => e,
    }
}

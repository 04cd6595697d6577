//! Turning SDK errors into [`ApiError`]s, for every AWS client.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::{ApiError, ApiErrorKind};

pub(crate) fn classify<E>(err: SdkError<E, HttpResponse>) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code().unwrap_or("Unknown").to_owned();
            let message = ctx.err().message().unwrap_or_default().to_owned();
            ApiError::new(ApiError::kind_for(&code, status), code, message)
        }
        SdkError::TimeoutError(_) => ApiError::new(
            ApiErrorKind::Transient,
            "Timeout",
            DisplayErrorContext(&err).to_string(),
        ),
        SdkError::DispatchFailure(_) => ApiError::new(
            ApiErrorKind::Transient,
            "DispatchFailure",
            DisplayErrorContext(&err).to_string(),
        ),
        SdkError::ResponseError(_) => ApiError::new(
            ApiErrorKind::Transient,
            "ResponseError",
            DisplayErrorContext(&err).to_string(),
        ),
        SdkError::ConstructionFailure(_) => ApiError::new(
            ApiErrorKind::Rejected,
            "ConstructionFailure",
            DisplayErrorContext(&err).to_string(),
        ),
        _ => ApiError::new(
            ApiErrorKind::Transient,
            "Unknown",
            DisplayErrorContext(&err).to_string(),
        ),
    }
}

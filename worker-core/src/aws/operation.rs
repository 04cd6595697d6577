//! Every AWS call the worker (and its workflows client) makes, named once: metric labels, the direct
//! client's `X-Amz-Target`, and the fakes' error scripting all use this.

/// One AWS API operation the worker calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Step Functions `GetActivityTask` (the long poll).
    GetActivityTask,
    /// Step Functions `SendTaskSuccess`.
    SendTaskSuccess,
    /// Step Functions `SendTaskFailure`.
    SendTaskFailure,
    /// Step Functions `SendTaskHeartbeat`.
    SendTaskHeartbeat,
    /// Step Functions `DescribeActivity` (start-up check).
    DescribeActivity,
    /// SQS `ReceiveMessage` (the long poll).
    ReceiveMessage,
    /// SQS `ChangeMessageVisibilityBatch`.
    ChangeMessageVisibilityBatch,
    /// SQS `DeleteMessageBatch`.
    DeleteMessageBatch,
    /// SQS `GetQueueAttributes` (start-up check).
    GetQueueAttributes,
    /// Lambda `SendDurableExecutionCallbackSuccess`.
    SendDurableExecutionCallbackSuccess,
    /// Lambda `SendDurableExecutionCallbackFailure`.
    SendDurableExecutionCallbackFailure,
    /// Lambda `SendDurableExecutionCallbackHeartbeat`.
    SendDurableExecutionCallbackHeartbeat,
    /// Step Functions `StartExecution` (the workflows client).
    StartExecution,
    /// Step Functions `DescribeExecution` (the workflows client).
    DescribeExecution,
    /// Step Functions `StopExecution` (the workflows client).
    StopExecution,
    /// Step Functions `ListExecutions` (the workflows client).
    ListExecutions,
    /// Step Functions `GetExecutionHistory` (the workflows client).
    GetExecutionHistory,
    /// DynamoDB `PutItem` (the task ledger's claim and settle).
    PutItem,
    /// DynamoDB `UpdateItem` (the task ledger's renewal).
    UpdateItem,
    /// DynamoDB `DeleteItem` (the task ledger's release).
    DeleteItem,
    /// DynamoDB `DescribeTable` (start-up check of the ledger).
    DescribeTable,
    /// DynamoDB `DescribeTimeToLive` (start-up check of the ledger).
    DescribeTimeToLive,
}

impl Operation {
    /// The operation's name in the API reference (and the metric label).
    pub const fn name(self) -> &'static str {
        match self {
            Self::GetActivityTask => "GetActivityTask",
            Self::SendTaskSuccess => "SendTaskSuccess",
            Self::SendTaskFailure => "SendTaskFailure",
            Self::SendTaskHeartbeat => "SendTaskHeartbeat",
            Self::DescribeActivity => "DescribeActivity",
            Self::ReceiveMessage => "ReceiveMessage",
            Self::ChangeMessageVisibilityBatch => "ChangeMessageVisibilityBatch",
            Self::DeleteMessageBatch => "DeleteMessageBatch",
            Self::GetQueueAttributes => "GetQueueAttributes",
            Self::SendDurableExecutionCallbackSuccess => "SendDurableExecutionCallbackSuccess",
            Self::SendDurableExecutionCallbackFailure => "SendDurableExecutionCallbackFailure",
            Self::SendDurableExecutionCallbackHeartbeat => "SendDurableExecutionCallbackHeartbeat",
            Self::StartExecution => "StartExecution",
            Self::DescribeExecution => "DescribeExecution",
            Self::StopExecution => "StopExecution",
            Self::ListExecutions => "ListExecutions",
            Self::GetExecutionHistory => "GetExecutionHistory",
            Self::PutItem => "PutItem",
            Self::UpdateItem => "UpdateItem",
            Self::DeleteItem => "DeleteItem",
            Self::DescribeTable => "DescribeTable",
            Self::DescribeTimeToLive => "DescribeTimeToLive",
        }
    }

    /// The `X-Amz-Target` header of the operation's AWS JSON request; empty
    /// for REST operations (Lambda's), which are addressed by their path.
    pub const fn target(self) -> &'static str {
        match self {
            Self::GetActivityTask => "AWSStepFunctions.GetActivityTask",
            Self::SendTaskSuccess => "AWSStepFunctions.SendTaskSuccess",
            Self::SendTaskFailure => "AWSStepFunctions.SendTaskFailure",
            Self::SendTaskHeartbeat => "AWSStepFunctions.SendTaskHeartbeat",
            Self::DescribeActivity => "AWSStepFunctions.DescribeActivity",
            Self::ReceiveMessage => "AmazonSQS.ReceiveMessage",
            Self::ChangeMessageVisibilityBatch => "AmazonSQS.ChangeMessageVisibilityBatch",
            Self::DeleteMessageBatch => "AmazonSQS.DeleteMessageBatch",
            Self::GetQueueAttributes => "AmazonSQS.GetQueueAttributes",
            Self::StartExecution => "AWSStepFunctions.StartExecution",
            Self::DescribeExecution => "AWSStepFunctions.DescribeExecution",
            Self::StopExecution => "AWSStepFunctions.StopExecution",
            Self::ListExecutions => "AWSStepFunctions.ListExecutions",
            Self::GetExecutionHistory => "AWSStepFunctions.GetExecutionHistory",
            Self::PutItem => "DynamoDB_20120810.PutItem",
            Self::UpdateItem => "DynamoDB_20120810.UpdateItem",
            Self::DeleteItem => "DynamoDB_20120810.DeleteItem",
            Self::DescribeTable => "DynamoDB_20120810.DescribeTable",
            Self::DescribeTimeToLive => "DynamoDB_20120810.DescribeTimeToLive",
            Self::SendDurableExecutionCallbackSuccess
            | Self::SendDurableExecutionCallbackFailure
            | Self::SendDurableExecutionCallbackHeartbeat => "",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::Operation;

    #[test]
    fn the_target_ends_with_the_name() {
        for op in [
            Operation::SendDurableExecutionCallbackSuccess,
            Operation::SendDurableExecutionCallbackFailure,
            Operation::SendDurableExecutionCallbackHeartbeat,
        ] {
            assert_eq!(op.target(), "", "{op}: a REST operation has no target");
        }
        for op in [
            Operation::GetActivityTask,
            Operation::SendTaskSuccess,
            Operation::SendTaskFailure,
            Operation::SendTaskHeartbeat,
            Operation::DescribeActivity,
            Operation::ReceiveMessage,
            Operation::ChangeMessageVisibilityBatch,
            Operation::DeleteMessageBatch,
            Operation::GetQueueAttributes,
            Operation::StartExecution,
            Operation::DescribeExecution,
            Operation::StopExecution,
            Operation::ListExecutions,
            Operation::GetExecutionHistory,
            Operation::PutItem,
            Operation::UpdateItem,
            Operation::DeleteItem,
            Operation::DescribeTable,
            Operation::DescribeTimeToLive,
        ] {
            assert!(op.target().ends_with(&format!(".{}", op.name())), "{op}");
        }
    }
}

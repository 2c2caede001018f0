//! Which lifecycle actions a sandbox's status allows: one `match`, so no
//! handler has to know the state machine.
//!
//! ```text
//! provisioning ──▶ ready ──stop──▶ stopped ──start──▶ provisioning
//!       │            │                                    
//!       └──▶ failed ◀┘ (init died)        any ──delete──▶ deleting ──▶ gone
//! ```

use sandpit_api::SandboxStatus;

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxAction {
    Start,
    Stop,
    Delete,
    /// Change name or retention settings.
    Update,
    /// Replace the proxy configuration (applies to a running sandbox).
    UpdateProxy,
    /// A data-plane request (exec, files).
    Dataplane,
}

/// What to do about an action given the current status.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Proceed,
    /// Nothing to do: the sandbox is already where the action would take it.
    AlreadyDone,
    /// Start the (stopped) sandbox first, then proceed.
    StartFirst,
    Reject(ApiError),
}

impl PartialEq for ApiError {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}
impl Eq for ApiError {}

pub fn decide(action: SandboxAction, status: SandboxStatus, name: &str) -> Decision {
    use SandboxAction as A;
    use SandboxStatus as S;
    match (action, status) {
        (_, S::Deleting) => Decision::Reject(ApiError::sandbox_not_found(name)),
        (A::Delete, _) => Decision::Proceed,
        (A::Update, _) => Decision::Proceed,

        (A::Start, S::Stopped | S::Failed) => Decision::Proceed,
        (A::Start, S::Ready | S::Provisioning) => Decision::AlreadyDone,

        (A::Stop, S::Ready | S::Failed) => Decision::Proceed,
        (A::Stop, S::Stopped) => Decision::AlreadyDone,
        (A::Stop, S::Provisioning) => Decision::Reject(ApiError::NotReady(format!(
            "Sandbox '{name}' is provisioning; stop it once it is ready"
        ))),

        (A::UpdateProxy | A::Dataplane, S::Ready) => Decision::Proceed,
        // `InvalidRequest` (400): the error the SDKs turn into
        // `SandboxNotReadyError` for a proxy update.
        (A::UpdateProxy, _) => Decision::Reject(ApiError::BadRequest(format!(
            "Sandbox '{name}' is {status}; its proxy configuration can only change while it is ready"
        ))),
        (A::Dataplane, S::Stopped) => Decision::StartFirst,
        (A::Dataplane, S::Provisioning) => {
            Decision::Reject(ApiError::NotReady(format!("Sandbox '{name}' is not ready yet (provisioning)")))
        }
        (A::Dataplane, S::Failed) => Decision::Reject(ApiError::NotReady(format!(
            "Sandbox '{name}' has failed; start or delete it"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_an_answer_for_every_status() {
        let actions = [
            SandboxAction::Start,
            SandboxAction::Stop,
            SandboxAction::Delete,
            SandboxAction::Update,
            SandboxAction::UpdateProxy,
            SandboxAction::Dataplane,
        ];
        for action in actions {
            for status in SandboxStatus::ALL {
                let _ = decide(action, status, "x");
            }
        }
    }

    #[test]
    fn key_transitions() {
        assert_eq!(
            decide(SandboxAction::Stop, SandboxStatus::Ready, "x"),
            Decision::Proceed
        );
        assert_eq!(
            decide(SandboxAction::Stop, SandboxStatus::Stopped, "x"),
            Decision::AlreadyDone
        );
        assert_eq!(
            decide(SandboxAction::Dataplane, SandboxStatus::Stopped, "x"),
            Decision::StartFirst
        );
        assert!(matches!(
            decide(SandboxAction::Dataplane, SandboxStatus::Provisioning, "x"),
            Decision::Reject(ApiError::NotReady(_))
        ));
        assert!(matches!(
            decide(SandboxAction::Start, SandboxStatus::Deleting, "x"),
            Decision::Reject(ApiError::NotFound { .. })
        ));
    }
}

//! What only an admin sees: the users and the audit log.

mod audit;
mod users;

pub use audit::AuditPage;
pub use users::UsersPage;

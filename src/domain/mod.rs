//! Pure domain types and rules: no I/O, no clock reads, no database.
//!
//! Everything that arrives from outside is parsed into one of these types at the edge
//! ("parse, don't validate"), so raw strings do not travel inward.

pub mod channel;
pub mod code;
pub mod flow;
pub mod ids;
pub mod limits;
pub mod mcc;
pub mod phone;
pub mod session;
pub mod sgate;
pub mod sms;
pub mod validate;

pub use channel::Channel;
pub use phone::PhoneNumber;

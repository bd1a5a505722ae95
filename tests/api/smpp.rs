//! SMPP routes against an in-process SMSC (the smpp34 crate's server).

//! Real servers for the tests, started on 127.0.0.1 with random free ports, each in a
//! temporary directory removed on drop. Each file owns one server.
#![allow(dead_code)]

pub mod mariadb;
pub mod mixed;
pub mod moto;
pub mod named;
pub mod registry;

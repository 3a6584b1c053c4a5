//! Macros that declare the C ABI and, from the same tokens, record what the drift test checks:
//! a field, enum value or function cannot be declared without also being listed.

/// Size and field offsets of one `#[repr(C)]` struct as Rust lays it out.
#[derive(Debug, Clone, Copy)]
pub struct StructLayout {
    pub name: &'static str,
    pub size: usize,
    /// (field name, byte offset), in declaration order.
    pub fields: &'static [(&'static str, usize)],
}

/// One constant of a C enum.
#[derive(Debug, Clone, Copy)]
pub struct EnumValue {
    pub enum_name: &'static str,
    pub name: &'static str,
    pub value: i32,
}

/// C enums: a `c_int` alias per enum and a constant per value; records them in `ENUM_VALUES`.
macro_rules! c_enums {
    ($(
        $(#[$enum_meta:meta])*
        enum $enum_name:ident {
            $( $(#[$value_meta:meta])* $value_name:ident = $value:expr ),+ $(,)?
        }
    )+) => {
        $(
            $(#[$enum_meta])*
            pub type $enum_name = core::ffi::c_int;
            $( $(#[$value_meta])* pub const $value_name: $enum_name = $value; )+
        )+

        /// Every enum constant declared above, for the ABI drift test.
        pub const ENUM_VALUES: &[$crate::EnumValue] = &[
            $( $( $crate::EnumValue {
                enum_name: stringify!($enum_name),
                name: stringify!($value_name),
                value: $value_name,
            }, )+ )+
        ];
    };
}

/// `#[repr(C)]` structs; records their sizes and field offsets in `STRUCT_LAYOUTS`.
macro_rules! c_structs {
    ($(
        $(#[$struct_meta:meta])*
        struct $struct_name:ident {
            $( $(#[$field_meta:meta])* $field:ident : $field_type:ty ),+ $(,)?
        }
    )+) => {
        $(
            $(#[$struct_meta])*
            #[repr(C)]
            #[derive(Debug, Clone, Copy)]
            pub struct $struct_name {
                $( $(#[$field_meta])* pub $field: $field_type, )+
            }
        )+

        /// Every struct declared above with its size and field offsets, for the ABI drift test.
        pub const STRUCT_LAYOUTS: &[$crate::StructLayout] = &[
            $( $crate::StructLayout {
                name: stringify!($struct_name),
                size: core::mem::size_of::<$struct_name>(),
                fields: &[ $( (stringify!($field), core::mem::offset_of!($struct_name, $field)), )+ ],
            }, )+
        ];
    };
}

/// `extern "C"` functions; records their names in `FUNCTION_NAMES`.
macro_rules! c_functions {
    ($(
        $(#[$fn_meta:meta])*
        fn $fn_name:ident ( $( $arg:ident : $arg_type:ty ),* $(,)? ) $( -> $ret:ty )? ;
    )+) => {
        extern "C" {
            $( $(#[$fn_meta])* pub fn $fn_name( $( $arg: $arg_type ),* ) $( -> $ret )?; )+
        }

        /// Every function declared above, for the ABI drift test.
        pub const FUNCTION_NAMES: &[&str] = &[ $( stringify!($fn_name), )+ ];

        /// (name, address) of every declared function. Taking the addresses makes the linker
        /// resolve each declaration, so a name the library does not export fails to link.
        pub fn function_addresses() -> [(&'static str, usize); FUNCTION_NAMES.len()] {
            [ $( (stringify!($fn_name), $fn_name as *const () as usize), )+ ]
        }
    };
}

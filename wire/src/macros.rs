/// An enum of the values a field may take, keeping the ones it does not
/// name as `Unknown` (smoltcp's `enum_with_unknown!`).
macro_rules! enum_with_unknown {
    (
        $(#[$attr:meta])*
        pub enum $name:ident($ty:ty) {
            $( $(#[$variant_attr:meta])* $variant:ident = $value:expr ),+ $(,)?
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$variant_attr])* $variant, )+
            Unknown($ty),
        }

        impl From<$ty> for $name {
            fn from(value: $ty) -> Self {
                match value {
                    $( $value => $name::$variant, )+
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for $ty {
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$variant => $value, )+
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}

/// A view over a buffer, smoltcp's way: the struct, `new_unchecked`,
/// `new_checked` (which runs the view's own `check` on the bytes, so that
/// once it succeeds no accessor panics), `into_inner` and `as_bytes`.
macro_rules! view {
    (
        $(#[$attr:meta])*
        pub struct $name:ident, error $err:ty;
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name<T: AsRef<[u8]>> {
            buffer: T,
        }

        impl<T: AsRef<[u8]>> $name<T> {
            /// A view without checks: accessors may panic on a short buffer.
            pub const fn new_unchecked(buffer: T) -> Self {
                $name { buffer }
            }

            /// A view, if the bytes pass the checks; then no accessor panics.
            pub fn new_checked(buffer: T) -> std::result::Result<Self, $err> {
                let view = $name { buffer };
                view.check()?;
                Ok(view)
            }

            pub fn into_inner(self) -> T {
                self.buffer
            }

            pub fn as_bytes(&self) -> &[u8] {
                self.buffer.as_ref()
            }
        }
    };
}

// The public surface of murmur. Only re-exports live here.
export {};

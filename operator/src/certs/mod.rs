//! Certificates: the operator as its own CA, serving certificates, renewal and CA rotation.

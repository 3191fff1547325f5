# Shared by e2e/bin scripts (sourced, not run): certificates with openssl and
# free loopback ports. ECDSA P-256 keys, 30-day validity: these are test and
# demo certificates on loopback only.

# new_ca DIR SUBJECT: writes DIR/ca.key and DIR/ca.crt.
new_ca() {
  mkdir -p "$1"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj "$2" -keyout "$1/ca.key" -out "$1/ca.crt" 2>/dev/null
}

# issue_cert DIR NAME SUBJECT EXTENSIONS: writes DIR/NAME.key and DIR/NAME.crt
# signed by DIR/ca.*; EXTENSIONS is openssl extension config, one per line.
issue_cert() {
  local dir="$1" name="$2"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$3" \
    -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
  printf '%s\n' "$4" >"$dir/$name.ext"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 30 -extfile "$dir/$name.ext" -out "$dir/$name.crt" 2>/dev/null
}

# A free TCP port on loopback: bind to port 0 and let the kernel choose.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

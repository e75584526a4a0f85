#!/bin/sh
# certs.sh DIR NAME...: a certificate authority in DIR (ca.crt, ca.key) and, for each NAME, a server certificate
# signed by it (NAME.crt, NAME.key), valid for 127.0.0.1, localhost and the docker-compose service names. What
# exists is kept. POSIX sh and openssl only: stack/cluster.sh runs it, and so does docker-compose.yml's `certs`.
set -eu
dir=$1; shift
mkdir -p "$dir"
chmod 700 "$dir"
names="IP:127.0.0.1,DNS:localhost,DNS:kafka-1,DNS:kafka-2,DNS:kafka-3,DNS:minio-1,DNS:minio-2,DNS:minio-3,DNS:minio-4,DNS:postgres"
if [ ! -f "$dir/ca.crt" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout "$dir/ca.key" -out "$dir/ca.crt" \
    -subj "/CN=marketstream local stack CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  echo "certificate authority created in $dir"
fi
for name in "$@"; do
  [ -f "$dir/$name.crt" ] && continue
  openssl req -newkey rsa:2048 -nodes -keyout "$dir/$name.key" -out "$dir/$name.csr" -subj "/CN=$name" 2>/dev/null
  # serverAuth for the clients, clientAuth for what the servers say to each other (Kafka's controllers)
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=$names" >"$dir/$name.ext"
  openssl x509 -req -sha256 -days 825 -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -CAcreateserial -out "$dir/$name.crt" -extfile "$dir/$name.ext" 2>/dev/null
  rm -f "$dir/$name.csr" "$dir/$name.ext"
  chmod 600 "$dir/$name.key"
  echo "certificate for $name signed by the stack's CA"
done

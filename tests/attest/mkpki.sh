#!/usr/bin/env bash
# tests/attest/mkpki.sh DIR - a test AMD-like PKI made with the openssl binary, for synthetic
# SEV-SNP reports: DIR/collateral/snp/Milan/{ark,ask}.pem (RSA-PSS, like AMD's), a VCEK (P-384)
# for chip id 0x11 * 64 at TCB bl 3 tee 0 snp 8 ucode 115 (DIR/vcek.der, DIR/vcek.key), and a
# second VCEK of the same chip at TCB bl 2 (DIR/vcek-old.der) whose report must fail the minimum.
# Also an Intel-like DCAP PKI (ECDSA P-256): DIR/sgx/{root,plat}.pem, a PCK (DIR/sgx/pck.key,
# chain DIR/sgx/chain.pem) and a revoked one (chain-revoked.pem, pck2.key), and the CRLs in
# DIR/sgxcoll/sgx/{rootcrl,pckcrl-platform}.der.
set -euo pipefail
d=$1
mkdir -p "$d/collateral/snp/Milan"
cd "$d"
dn="/OU=Engineering/C=US/L=Santa Clara/ST=CA/O=Test Devices"
cat >ext.cnf <<'CNF'
[ca]
basicConstraints=critical,CA:true
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
[leaf]
keyUsage=critical,digitalSignature
CNF
pss=(-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:48 -sigopt rsa_mgf1_md:sha384 -sha384)
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out ark.key 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out ask.key 2>/dev/null
openssl req -new -x509 -key ark.key -subj "$dn/CN=ARK-Milan" -days 3650 "${pss[@]}" \
    -extensions ca -config <(cat ext.cnf; echo '[req]'; echo 'distinguished_name=dn'; echo '[dn]') \
    -out collateral/snp/Milan/ark.pem
openssl req -new -key ask.key -subj "$dn/CN=SEV-Milan" -out ask.csr
openssl x509 -req -in ask.csr -CA collateral/snp/Milan/ark.pem -CAkey ark.key -set_serial 2 -days 3650 \
    "${pss[@]}" -extfile ext.cnf -extensions ca -out collateral/snp/Milan/ask.pem 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out vcek.key
hwid=$(printf '11%.0s' $(seq 64) | sed 's/../&:/g; s/:$//')
vcek() { # name blSPL
    cat ext.cnf >"$1.cnf"
    cat >>"$1.cnf" <<CNF
[amd]
keyUsage=critical,digitalSignature
1.3.6.1.4.1.3704.1.1=DER:02:01:00
1.3.6.1.4.1.3704.1.2=DER:16:08:4D:69:6C:61:6E:2D:42:30
1.3.6.1.4.1.3704.1.3.1=DER:02:01:$2
1.3.6.1.4.1.3704.1.3.2=DER:02:01:00
1.3.6.1.4.1.3704.1.3.3=DER:02:01:08
1.3.6.1.4.1.3704.1.3.8=DER:02:01:73
1.3.6.1.4.1.3704.1.4=DER:$hwid
CNF
    openssl req -new -key vcek.key -subj "$dn/CN=SEV-VCEK" -out "$1.csr"
    openssl x509 -req -in "$1.csr" -CA collateral/snp/Milan/ask.pem -CAkey ask.key -set_serial "$3" -days 3650 \
        "${pss[@]}" -extfile "$1.cnf" -extensions amd -outform DER -out "$1.der" 2>/dev/null
}
vcek vcek 03 3
vcek vcek-old 02 4
openssl x509 -in collateral/snp/Milan/ark.pem -outform DER | openssl dgst -sha256 -r | cut -c1-64 >ark.sha256

# ---- Intel-like DCAP PKI ----
mkdir -p sgx sgxcoll/sgx
cd sgx
# The PCKs carry the SGX extension of the PCK recorded in tests/attest/data/tdx (FMSPC
# 50806f000000, SGX TCB components 3,3,2,2,2,1,0,2,0..., PCESVN 11, PCE id 0000).
SGXEXT=30820226301E060A2A864886F84D010D01010410089DDFDB9C0359C82A3BC7719239574E30820163060A2A864886F84D010D0102308201533010060B2A864886F84D010D0102010201033010060B2A864886F84D010D0102020201033010060B2A864886F84D010D0102030201023010060B2A864886F84D010D0102040201023010060B2A864886F84D010D0102050201023010060B2A864886F84D010D0102060201013010060B2A864886F84D010D0102070201003010060B2A864886F84D010D0102080201023010060B2A864886F84D010D0102090201003010060B2A864886F84D010D01020A0201003010060B2A864886F84D010D01020B0201003010060B2A864886F84D010D01020C0201003010060B2A864886F84D010D01020D0201003010060B2A864886F84D010D01020E0201003010060B2A864886F84D010D01020F0201003010060B2A864886F84D010D0102100201003010060B2A864886F84D010D01021102010B301F060B2A864886F84D010D0102120410030302020201000200000000000000003010060A2A864886F84D010D0103040200003014060A2A864886F84D010D0104040650806F000000300F060A2A864886F84D010D01050A0101301E060A2A864886F84D010D010604108C314D17D205DFAFCBECBB00FC87EFF73044060A2A864886F84D010D010730363010060B2A864886F84D010D0107010101FF3010060B2A864886F84D010D0107020101003010060B2A864886F84D010D0107030101FF
cat >ca.cnf <<CNF
[ca]
default_ca=ca_default
[ca_default]
database=./index.txt
crlnumber=./crlnumber
default_md=sha256
default_crl_days=30
[req]
distinguished_name=dn
[dn]
[v3ca]
basicConstraints=critical,CA:true
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
[v3leaf]
keyUsage=critical,digitalSignature
[v3pck]
keyUsage=critical,digitalSignature
1.2.840.113741.1.13.1=DER:$SGXEXT
CNF
for k in root plat pck pck2; do openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $k.key; done
openssl req -new -x509 -key root.key -subj "/CN=Test SGX Root CA/O=Test" -days 3650 -sha256 -extensions v3ca \
    -config ca.cnf -out root.pem
openssl req -new -key plat.key -subj "/CN=Test SGX PCK Platform CA/O=Test" -config ca.cnf -out plat.csr
openssl x509 -req -in plat.csr -CA root.pem -CAkey root.key -set_serial 16 -days 3650 -sha256 -extfile ca.cnf \
    -extensions v3ca -out plat.pem 2>/dev/null
for k in pck pck2; do
    openssl req -new -key $k.key -subj "/CN=Test SGX PCK Certificate/O=Test" -config ca.cnf -out $k.csr
    openssl x509 -req -in $k.csr -CA plat.pem -CAkey plat.key -set_serial $([ $k = pck ] && echo 32 || echo 33) \
        -days 3650 -sha256 -extfile ca.cnf -extensions v3pck -out $k.pem 2>/dev/null
done
# The TCB signing key (signs TCB info and QE identity) and its chain.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out tcbsign.key
openssl req -new -key tcbsign.key -subj "/CN=Test SGX TCB Signing/O=Test" -config ca.cnf -out tcbsign.csr
openssl x509 -req -in tcbsign.csr -CA root.pem -CAkey root.key -set_serial 48 -days 3650 -sha256 -extfile ca.cnf \
    -extensions v3leaf -out tcbsign.pem 2>/dev/null
cat tcbsign.pem root.pem >../sgxcoll/sgx/tcb-signing-chain.pem
cat pck.pem plat.pem root.pem >chain.pem
cat pck2.pem plat.pem root.pem >chain-revoked.pem
: >index.txt
echo 01 >crlnumber
openssl ca -config ca.cnf -gencrl -keyfile root.key -cert root.pem -out rootcrl.pem 2>/dev/null
openssl crl -in rootcrl.pem -outform DER -out ../sgxcoll/sgx/rootcrl.der
: >index.txt
openssl ca -config ca.cnf -keyfile plat.key -cert plat.pem -revoke pck2.pem 2>/dev/null
openssl ca -config ca.cnf -gencrl -keyfile plat.key -cert plat.pem -out pckcrl.pem 2>/dev/null
openssl crl -in pckcrl.pem -outform DER -out ../sgxcoll/sgx/pckcrl-platform.der
openssl x509 -in root.pem -outform DER | openssl dgst -sha256 -r | cut -c1-64 >root.sha256

/*
 * Ed25519 key pairs as the Conduit CLI makes them (Go crypto/ed25519 NewKeyFromSeed) and the
 * Proxy ID it shows (crypto.go KeyPairToCurve25519Base64: filippo.io/edwards25519 SetBytes,
 * then BytesMontgomery). Written from RFC 8032 and FIPS 180-4 for the stand-in: not constant
 * time, never to be used for anything secret.
 */
#ifndef STANDIN_ED25519_H
#define STANDIN_ED25519_H

#include <stddef.h>

/* FIPS 180-4 SHA-512 */
void sha512(const void *msg, size_t len, unsigned char out[64]);

/* RFC 8032 5.1.5: the public key of a 32-byte seed */
void ed25519_public_key(const unsigned char seed[32], unsigned char pub[32]);

/* u = (1 + y) / (1 - y) of the point a public key encodes, as 32 little-endian bytes.
 * -1 when the 32 bytes are no point on the curve (edwards25519 "invalid point encoding");
 * like Go, a y >= p and x = 0 with the sign bit set are accepted. */
int ed25519_montgomery_u(const unsigned char pub[32], unsigned char u[32]);

#endif

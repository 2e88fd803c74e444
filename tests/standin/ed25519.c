/*
 * Ed25519 public keys (RFC 8032 5.1) and their Curve25519 u-coordinate, for the stand-in.
 * SHA-512 from FIPS 180-4; the field GF(2^255 - 19) in five 51-bit limbs; points in extended
 * twisted Edwards coordinates (X:Y:Z:T), x = X/Z, y = Y/Z, x*y = T/Z (RFC 8032 5.1.4).
 * Plain double-and-add: not constant time, which a test stand-in does not need.
 */
#include "ed25519.h"

#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------ SHA-512 (FIPS 180-4 6.4) */

/* 4.2.3: the first 64 bits of the fractional parts of the cube roots of the first 80 primes */
static const uint64_t K[80] = {
    0x428a2f98d728ae22ULL, 0x7137449123ef65cdULL, 0xb5c0fbcfec4d3b2fULL, 0xe9b5dba58189dbbcULL,
    0x3956c25bf348b538ULL, 0x59f111f1b605d019ULL, 0x923f82a4af194f9bULL, 0xab1c5ed5da6d8118ULL,
    0xd807aa98a3030242ULL, 0x12835b0145706fbeULL, 0x243185be4ee4b28cULL, 0x550c7dc3d5ffb4e2ULL,
    0x72be5d74f27b896fULL, 0x80deb1fe3b1696b1ULL, 0x9bdc06a725c71235ULL, 0xc19bf174cf692694ULL,
    0xe49b69c19ef14ad2ULL, 0xefbe4786384f25e3ULL, 0x0fc19dc68b8cd5b5ULL, 0x240ca1cc77ac9c65ULL,
    0x2de92c6f592b0275ULL, 0x4a7484aa6ea6e483ULL, 0x5cb0a9dcbd41fbd4ULL, 0x76f988da831153b5ULL,
    0x983e5152ee66dfabULL, 0xa831c66d2db43210ULL, 0xb00327c898fb213fULL, 0xbf597fc7beef0ee4ULL,
    0xc6e00bf33da88fc2ULL, 0xd5a79147930aa725ULL, 0x06ca6351e003826fULL, 0x142929670a0e6e70ULL,
    0x27b70a8546d22ffcULL, 0x2e1b21385c26c926ULL, 0x4d2c6dfc5ac42aedULL, 0x53380d139d95b3dfULL,
    0x650a73548baf63deULL, 0x766a0abb3c77b2a8ULL, 0x81c2c92e47edaee6ULL, 0x92722c851482353bULL,
    0xa2bfe8a14cf10364ULL, 0xa81a664bbc423001ULL, 0xc24b8b70d0f89791ULL, 0xc76c51a30654be30ULL,
    0xd192e819d6ef5218ULL, 0xd69906245565a910ULL, 0xf40e35855771202aULL, 0x106aa07032bbd1b8ULL,
    0x19a4c116b8d2d0c8ULL, 0x1e376c085141ab53ULL, 0x2748774cdf8eeb99ULL, 0x34b0bcb5e19b48a8ULL,
    0x391c0cb3c5c95a63ULL, 0x4ed8aa4ae3418acbULL, 0x5b9cca4f7763e373ULL, 0x682e6ff3d6b2b8a3ULL,
    0x748f82ee5defb2fcULL, 0x78a5636f43172f60ULL, 0x84c87814a1f0ab72ULL, 0x8cc702081a6439ecULL,
    0x90befffa23631e28ULL, 0xa4506cebde82bde9ULL, 0xbef9a3f7b2c67915ULL, 0xc67178f2e372532bULL,
    0xca273eceea26619cULL, 0xd186b8c721c0c207ULL, 0xeada7dd6cde0eb1eULL, 0xf57d4f7fee6ed178ULL,
    0x06f067aa72176fbaULL, 0x0a637dc5a2c898a6ULL, 0x113f9804bef90daeULL, 0x1b710b35131c471bULL,
    0x28db77f523047d84ULL, 0x32caab7b40c72493ULL, 0x3c9ebe0a15c9bebcULL, 0x431d67c49c100d4cULL,
    0x4cc5d4becb3e42b6ULL, 0x597f299cfc657e2aULL, 0x5fcb6fab3ad6faecULL, 0x6c44198c4a475817ULL,
};

/* 5.3.5: the fractional parts of the square roots of the first 8 primes */
static const uint64_t H0[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
    0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL,
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (64 - (n))))

static void sha512_block(uint64_t h[8], const unsigned char *p)
{
    uint64_t w[80], s[8];
    for (int i = 0; i < 16; i++) {
        w[i] = 0;
        for (int k = 0; k < 8; k++)
            w[i] = (w[i] << 8) | p[i * 8 + k]; /* big-endian words */
    }
    for (int i = 16; i < 80; i++) {
        uint64_t s0 = ROTR(w[i - 15], 1) ^ ROTR(w[i - 15], 8) ^ (w[i - 15] >> 7);
        uint64_t s1 = ROTR(w[i - 2], 19) ^ ROTR(w[i - 2], 61) ^ (w[i - 2] >> 6);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    memcpy(s, h, sizeof s); /* a b c d e f g h */
    for (int i = 0; i < 80; i++) {
        uint64_t S1 = ROTR(s[4], 14) ^ ROTR(s[4], 18) ^ ROTR(s[4], 41);
        uint64_t ch = (s[4] & s[5]) ^ (~s[4] & s[6]);
        uint64_t t1 = s[7] + S1 + ch + K[i] + w[i];
        uint64_t S0 = ROTR(s[0], 28) ^ ROTR(s[0], 34) ^ ROTR(s[0], 39);
        uint64_t maj = (s[0] & s[1]) ^ (s[0] & s[2]) ^ (s[1] & s[2]);
        memmove(s + 1, s, 7 * sizeof s[0]);
        s[4] += t1;
        s[0] = t1 + S0 + maj;
    }
    for (int i = 0; i < 8; i++)
        h[i] += s[i];
}

void sha512(const void *msg, size_t len, unsigned char out[64])
{
    const unsigned char *m = msg;
    uint64_t h[8];
    memcpy(h, H0, sizeof h);
    size_t full = len / 128 * 128;
    for (size_t o = 0; o < full; o += 128)
        sha512_block(h, m + o);
    /* 5.1.2 padding: 0x80, zeros, the length in bits as a 128-bit big-endian number */
    unsigned char tail[256] = {0};
    size_t rest = len - full, n = rest + 1 + 16 <= 128 ? 128 : 256;
    memcpy(tail, m + full, rest);
    tail[rest] = 0x80;
    uint64_t bits = (uint64_t)len << 3;
    for (int k = 0; k < 8; k++)
        tail[n - 1 - k] = (unsigned char)(bits >> (8 * k));
    tail[n - 9] = (unsigned char)((uint64_t)len >> 61);
    for (size_t o = 0; o < n; o += 128)
        sha512_block(h, tail + o);
    for (int i = 0; i < 64; i++)
        out[i] = (unsigned char)(h[i / 8] >> (56 - 8 * (i % 8)));
}

/* ------------------------------------------------------------ GF(p), p = 2^255 - 19 */

typedef unsigned __int128 u128;
typedef struct { uint64_t v[5]; } fe; /* sum v[i] * 2^(51 i) */
#define MASK51 ((1ULL << 51) - 1)

static void fe_carry(fe *r) /* after it, limbs < 2^51 but v[0], a little above at most */
{
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < 5; i++) {
            uint64_t c = r->v[i] >> 51;
            r->v[i] &= MASK51;
            r->v[(i + 1) % 5] += i < 4 ? c : 19 * c; /* 2^255 = 19 (mod p) */
        }
}

static void fe_set(fe *r, uint64_t n)
{
    memset(r, 0, sizeof *r);
    r->v[0] = n;
}

static void fe_add(fe *r, const fe *a, const fe *b)
{
    for (int i = 0; i < 5; i++)
        r->v[i] = a->v[i] + b->v[i];
    fe_carry(r);
}

static void fe_sub(fe *r, const fe *a, const fe *b) /* a + 2p - b */
{
    for (int i = 0; i < 5; i++)
        r->v[i] = a->v[i] + (i ? 2 * MASK51 : 2 * (MASK51 - 18)) - b->v[i];
    fe_carry(r);
}

static void fe_mul(fe *r, const fe *a, const fe *b)
{
    u128 t[5] = {0};
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++) {
            u128 p = (u128)a->v[i] * b->v[j];
            if (i + j < 5)
                t[i + j] += p;
            else
                t[i + j - 5] += p * 19;
        }
    u128 c = 0;
    for (int i = 0; i < 5; i++) {
        t[i] += c;
        r->v[i] = (uint64_t)t[i] & MASK51;
        c = t[i] >> 51;
    }
    r->v[0] += (uint64_t)c * 19;
    fe_carry(r);
}

/* a^(2^k - c) for 248 < k <= 255, 0 < c < 256: square and multiply from the top bit */
static void fe_pow(fe *r, const fe *a, int k, int c)
{
    unsigned char e[32];
    memset(e, 0xff, sizeof e);
    e[0] = (unsigned char)(256 - c);
    e[31] = (unsigned char)((1 << (k - 248)) - 1);
    fe x;
    fe_set(&x, 1);
    for (int i = k - 1; i >= 0; i--) {
        fe_mul(&x, &x, &x);
        if ((e[i / 8] >> (i % 8)) & 1)
            fe_mul(&x, &x, a);
    }
    *r = x;
}

static void fe_invert(fe *r, const fe *a) { fe_pow(r, a, 255, 21); } /* a^(p-2); 0 gives 0 */

static void fe_from_bytes(fe *r, const unsigned char b[32]) /* bit 255 ignored, y >= p kept */
{
    uint64_t acc = 0;
    int bits = 0, i = 0;
    for (int o = 0; o < 32; o++) {
        acc |= (uint64_t)(o == 31 ? b[o] & 0x7f : b[o]) << bits;
        bits += 8;
        if (bits >= 51) {
            r->v[i++] = acc & MASK51;
            acc >>= 51;
            bits -= 51;
        }
    }
}

static void fe_to_bytes(unsigned char out[32], const fe *a) /* canonical: 0 <= value < p */
{
    fe t = *a;
    while ((t.v[0] | t.v[1] | t.v[2] | t.v[3] | t.v[4]) >> 51)
        fe_carry(&t);
    if (t.v[0] >= MASK51 - 18 && (t.v[1] & t.v[2] & t.v[3] & t.v[4]) == MASK51) {
        t.v[0] -= MASK51 - 18; /* value >= p: subtract p once */
        t.v[1] = t.v[2] = t.v[3] = t.v[4] = 0;
    }
    uint64_t acc = 0; /* fewer than 8 bits held between limbs */
    int bits = 0, o = 0;
    for (int i = 0; i < 5; i++) {
        acc |= t.v[i] << bits;
        for (bits += 51; bits >= 8; bits -= 8, acc >>= 8)
            out[o++] = (unsigned char)acc;
    }
    out[31] = (unsigned char)acc; /* 255 bits = 31 bytes and 7 bits; bit 255 is 0 */
}

static int fe_equal(const fe *a, const fe *b)
{
    unsigned char x[32], y[32];
    fe_to_bytes(x, a);
    fe_to_bytes(y, b);
    return memcmp(x, y, 32) == 0;
}

static int fe_is_odd(const fe *a)
{
    unsigned char x[32];
    fe_to_bytes(x, a);
    return x[0] & 1;
}

/* ------------------------------------------------------------ edwards25519 */

typedef struct { fe X, Y, Z, T; } ge;

static fe D, D2, SQRT_M1; /* d = -121665/121666, 2d, sqrt(-1) = 2^((p-1)/4) */
static ge BASE;           /* B = (x, 4/5), x positive (RFC 8032 5.1) */

static int decode_point(ge *r, const unsigned char b[32]);

static void init_constants(void)
{
    static int ready;
    if (ready)
        return;
    fe n, m, zero;
    fe_set(&zero, 0);
    fe_set(&n, 121665);
    fe_sub(&n, &zero, &n);
    fe_set(&m, 121666);
    fe_invert(&m, &m);
    fe_mul(&D, &n, &m);
    fe_add(&D2, &D, &D);
    fe_set(&n, 2);
    fe_pow(&SQRT_M1, &n, 253, 5);
    fe_set(&n, 4);
    fe_set(&m, 5);
    fe_invert(&m, &m);
    fe_mul(&n, &n, &m);
    unsigned char y[32];
    fe_to_bytes(y, &n); /* sign bit 0: the even x */
    ready = 1;
    decode_point(&BASE, y);
}

/* RFC 8032 5.1.3, as Go's edwards25519 SetBytes: a non-canonical y and x = 0 with the sign bit
 * set are accepted. 0 = a point, -1 = (y^2 - 1) / (d y^2 + 1) has no square root. */
static int decode_point(ge *r, const unsigned char b[32])
{
    init_constants();
    fe y, yy, u, v, v3, x, t, one;
    fe_set(&one, 1);
    fe_from_bytes(&y, b);
    fe_mul(&yy, &y, &y);
    fe_sub(&u, &yy, &one);
    fe_mul(&v, &yy, &D);
    fe_add(&v, &v, &one);
    /* x = u v^3 (u v^7)^((p-5)/8) */
    fe_mul(&v3, &v, &v);
    fe_mul(&v3, &v3, &v);
    fe_mul(&t, &v3, &v3);
    fe_mul(&t, &t, &v);
    fe_mul(&t, &t, &u);
    fe_pow(&t, &t, 252, 3);
    fe_mul(&x, &u, &v3);
    fe_mul(&x, &x, &t);
    fe vxx, neg_u, zero;
    fe_mul(&vxx, &x, &x);
    fe_mul(&vxx, &vxx, &v);
    fe_set(&zero, 0);
    fe_sub(&neg_u, &zero, &u);
    if (fe_equal(&vxx, &neg_u))
        fe_mul(&x, &x, &SQRT_M1);
    else if (!fe_equal(&vxx, &u))
        return -1;
    if (fe_is_odd(&x) != (b[31] >> 7))
        fe_sub(&x, &zero, &x);
    r->X = x;
    r->Y = y;
    fe_set(&r->Z, 1);
    fe_mul(&r->T, &x, &y);
    return 0;
}

/* RFC 8032 5.1.4 addition, complete: also doubles (p == q) and takes r == p or r == q */
static void ge_add(ge *r, const ge *p, const ge *q)
{
    fe a, b, c, d, e, f, g, h, t;
    fe_sub(&a, &p->Y, &p->X);
    fe_sub(&t, &q->Y, &q->X);
    fe_mul(&a, &a, &t);
    fe_add(&b, &p->Y, &p->X);
    fe_add(&t, &q->Y, &q->X);
    fe_mul(&b, &b, &t);
    fe_mul(&c, &p->T, &D2);
    fe_mul(&c, &c, &q->T);
    fe_mul(&d, &p->Z, &q->Z);
    fe_add(&d, &d, &d);
    fe_sub(&e, &b, &a);
    fe_sub(&f, &d, &c);
    fe_add(&g, &d, &c);
    fe_add(&h, &b, &a);
    fe_mul(&r->X, &e, &f);
    fe_mul(&r->Y, &g, &h);
    fe_mul(&r->T, &e, &h);
    fe_mul(&r->Z, &f, &g);
}

/* 5.1.2 encoding: y, little-endian, with the low bit of x in bit 255 */
static void encode_point(unsigned char out[32], const ge *p)
{
    fe zi, x, y;
    fe_invert(&zi, &p->Z);
    fe_mul(&x, &p->X, &zi);
    fe_mul(&y, &p->Y, &zi);
    fe_to_bytes(out, &y);
    out[31] |= (unsigned char)(fe_is_odd(&x) << 7);
}

void ed25519_public_key(const unsigned char seed[32], unsigned char pub[32])
{
    init_constants();
    /* 5.1.5: the low half of SHA-512(seed), clamped, is the secret scalar s; A = [s]B */
    unsigned char h[64];
    sha512(seed, 32, h);
    h[0] &= 248;
    h[31] &= 127;
    h[31] |= 64;
    ge a;
    fe_set(&a.X, 0);
    fe_set(&a.Y, 1);
    fe_set(&a.Z, 1);
    fe_set(&a.T, 0);
    for (int i = 254; i >= 0; i--) { /* bit 255 is cleared */
        ge_add(&a, &a, &a);
        if ((h[i / 8] >> (i % 8)) & 1)
            ge_add(&a, &a, &BASE);
    }
    encode_point(pub, &a);
}

int ed25519_montgomery_u(const unsigned char pub[32], unsigned char u[32])
{
    ge p;
    if (decode_point(&p, pub) < 0)
        return -1;
    /* u = (1 + y) / (1 - y) (RFC 7748 4.1); y = 1 gives u = 0, as 1/0 = 0 in Go's field */
    fe one, num, den;
    fe_set(&one, 1);
    fe_add(&num, &one, &p.Y);
    fe_sub(&den, &one, &p.Y);
    fe_invert(&den, &den);
    fe_mul(&num, &num, &den);
    fe_to_bytes(u, &num);
    return 0;
}

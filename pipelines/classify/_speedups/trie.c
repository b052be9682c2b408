/* The pattern trie (a double array built from a dense table) and the scan of one text. */
#include "speedups.h"

void automaton_free(Automaton *a) {
    free(a->wide_cp); free(a->wide_class); free(a->delta); free(a->node); free(a->key_of);
    free(a->key_len); free(a->tgt_off); free(a->tgt_pid); free(a->tgt_prefix);
    memset(a, 0, sizeof(*a));
}

static inline int32_t char_class(const Automaton *a, Py_UCS4 c) {
    if (c < 128) return a->ascii_class[c];
    Py_ssize_t lo = 0, hi = a->nwide;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (a->wide_cp[mid] < c) lo = mid + 1; else hi = mid;
    }
    return (lo < a->nwide && a->wide_cp[lo] == c) ? a->wide_class[lo] : 0;
}

static int cmp_ucs4(const void *x, const void *y) {
    Py_UCS4 a = *(const Py_UCS4 *)x, b = *(const Py_UCS4 *)y;
    return (a > b) - (a < b);
}

/* The dense trie (delta) becomes a double array: states placed breadth-first, each at the first
 * base where all its children's slots are free. Frees delta; key_of is re-indexed by slot. */
/* Smallest free slot >= i: a union-find over "next free" links with path halving. */
static inline Py_ssize_t next_free(int32_t *nf, Py_ssize_t i) {
    while (nf[i] != i) {
        nf[i] = nf[nf[i]];
        i = nf[i];
    }
    return i;
}

static int compact(Automaton *a) {
    const int nc = a->nclass;
    Py_ssize_t n = a->nstates, cap = 2 * n + 2 * nc + 2;
    Node *node = malloc((size_t)cap * sizeof(Node));
    int32_t *key = malloc((size_t)cap * sizeof(int32_t));
    int32_t *nf = malloc((size_t)(cap + 1) * sizeof(int32_t));
    int32_t *slot = malloc((size_t)n * sizeof(int32_t));
    int32_t *queue = malloc((size_t)n * sizeof(int32_t));
    int32_t *kids = malloc((size_t)nc * sizeof(int32_t));
    if (!node || !key || !nf || !slot || !queue || !kids) goto nomem;
    for (Py_ssize_t i = 0; i < cap; i++) { node[i].base = 0; node[i].check = -1; key[i] = -1; nf[i] = (int32_t)i; }
    nf[cap] = (int32_t)cap;
    node[0].check = -2; /* the root: no parent */
    nf[0] = 1;
    slot[0] = 0;
    queue[0] = 0;
    Py_ssize_t head = 0, tail = 1;
    while (head < tail) {
        int32_t r = queue[head++], s = slot[r];
        int k = 0;
        for (int c = 0; c < nc; c++) if (a->delta[(Py_ssize_t)r * nc + c] >= 0) kids[k++] = c;
        Py_ssize_t b = 0;
        if (k) {
            /* Try each free slot for the first child; the others must be free too. */
            for (Py_ssize_t f = next_free(nf, 1);; f = next_free(nf, f + 1)) {
                b = f - kids[0];
                if (b < 1) continue;
                if (b + nc + 1 >= cap) {
                    Py_ssize_t grown = cap * 2;
                    Node *n2 = realloc(node, (size_t)grown * sizeof(Node));
                    if (!n2) goto nomem;
                    node = n2;
                    int32_t *k2 = realloc(key, (size_t)grown * sizeof(int32_t));
                    if (!k2) goto nomem;
                    key = k2;
                    int32_t *f2 = realloc(nf, (size_t)(grown + 1) * sizeof(int32_t));
                    if (!f2) goto nomem;
                    nf = f2;
                    for (Py_ssize_t i = cap; i < grown; i++) { node[i].base = 0; node[i].check = -1; key[i] = -1; }
                    for (Py_ssize_t i = cap; i <= grown; i++) nf[i] = (int32_t)i;
                    cap = grown;
                }
                int ok = 1;
                for (int j = 1; j < k && ok; j++) ok = node[b + kids[j]].check == -1;
                if (ok) break;
            }
            if (b >= (1 << 29)) goto toobig;
            for (int j = 0; j < k; j++) {
                Py_ssize_t t = b + kids[j];
                int32_t child = a->delta[(Py_ssize_t)r * nc + kids[j]];
                node[t].check = s;
                nf[t] = (int32_t)(t + 1);
                key[t] = a->key_of[child];
                slot[child] = (int32_t)t;
                queue[tail++] = child;
            }
        }
        node[s].base = (int32_t)((b << 1) | (a->key_of[r] >= 0));
    }
    free(nf); free(slot); free(queue); free(kids);
    free(a->delta); a->delta = NULL;
    free(a->key_of);
    a->node = node;
    a->key_of = key;
    a->nslots = cap;
    for (int c = 0; c < 128; c++) {
        Py_ssize_t t = (node[0].base >> 1) + a->ascii_class[c];
        a->root[c] = a->ascii_class[c] && node[t].check == 0 ? (int32_t)t : -1;
    }
    return 0;
nomem:
    free(node); free(key); free(nf); free(slot); free(queue); free(kids);
    PyErr_NoMemory();
    return -1;
toobig:
    free(node); free(key); free(nf); free(slot); free(queue); free(kids);
    PyErr_SetString(PyExc_ValueError, "too many or too long patterns for the compiled matcher");
    return -1;
}

int automaton_build(Automaton *a, PyObject *keys) {
    memset(a, 0, sizeof(*a));
    PyObject *fast = PySequence_Fast(keys, "keys must be a sequence");
    if (!fast) return -1;
    Py_ssize_t nkeys = PySequence_Fast_GET_SIZE(fast);
    Py_ssize_t total = 1, ntargets = 0;
    for (Py_ssize_t k = 0; k < nkeys; k++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, k);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 || !PyUnicode_Check(PyTuple_GET_ITEM(item, 0))) {
            PyErr_SetString(PyExc_TypeError, "each key must be (str, targets)");
            goto fail;
        }
        Py_ssize_t len = PyUnicode_GET_LENGTH(PyTuple_GET_ITEM(item, 0));
        if (len == 0) { PyErr_SetString(PyExc_ValueError, "empty key"); goto fail; }
        total += len;
        Py_ssize_t nt = PyObject_Length(PyTuple_GET_ITEM(item, 1));
        if (nt < 0) goto fail;
        ntargets += nt;
    }
    if (total > INT32_MAX / 4) { PyErr_SetString(PyExc_ValueError, "too many keys"); goto fail; }

    /* Alphabet: every distinct code point in the keys gets a class; class 0 is "anything else". */
    for (int c = 0; c < 128; c++) a->ascii_class[c] = -1;
    Py_UCS4 *wide = malloc((size_t)total * sizeof(Py_UCS4));
    if (!wide) { PyErr_NoMemory(); goto fail; }
    Py_ssize_t nw = 0;
    int nclass = 1;
    for (Py_ssize_t k = 0; k < nkeys; k++) {
        PyObject *key = PyTuple_GET_ITEM(PySequence_Fast_GET_ITEM(fast, k), 0);
        int kind = PyUnicode_KIND(key);
        const void *data = PyUnicode_DATA(key);
        for (Py_ssize_t i = 0; i < PyUnicode_GET_LENGTH(key); i++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, i);
            if (c < 128) {
                if (a->ascii_class[c] < 0) a->ascii_class[c] = nclass++;
            } else {
                wide[nw++] = c;
            }
        }
    }
    for (int c = 0; c < 128; c++) if (a->ascii_class[c] < 0) a->ascii_class[c] = 0;
    qsort(wide, (size_t)nw, sizeof(Py_UCS4), cmp_ucs4);
    Py_ssize_t uw = 0;
    for (Py_ssize_t i = 0; i < nw; i++) if (uw == 0 || wide[uw - 1] != wide[i]) wide[uw++] = wide[i];
    a->wide_cp = wide;
    a->nwide = uw;
    a->wide_class = malloc((size_t)(uw ? uw : 1) * sizeof(int32_t));
    if (!a->wide_class) { PyErr_NoMemory(); goto fail; }
    for (Py_ssize_t i = 0; i < uw; i++) a->wide_class[i] = nclass++;
    a->nclass = nclass;
    /* The trie is first built as a dense table (states x classes); keep that under 64 MiB. Rules with
     * very many distinct characters (CJK, say) get the pure-Python engine instead. */
    if ((double)total * (double)nclass >= (double)(1 << 24)) {
        PyErr_SetString(PyExc_ValueError, "too many or too long patterns for the compiled matcher");
        goto fail;
    }

    /* Trie. */
    a->delta = malloc((size_t)total * (size_t)nclass * sizeof(int32_t));
    a->key_of = malloc((size_t)total * sizeof(int32_t));
    a->key_len = malloc((size_t)(nkeys ? nkeys : 1) * sizeof(int32_t));
    a->tgt_off = malloc((size_t)(nkeys + 1) * sizeof(int32_t));
    a->tgt_pid = malloc((size_t)(ntargets ? ntargets : 1) * sizeof(int32_t));
    a->tgt_prefix = malloc((size_t)(ntargets ? ntargets : 1));
    if (!a->delta || !a->key_of || !a->key_len || !a->tgt_off || !a->tgt_pid || !a->tgt_prefix) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t i = 0; i < (Py_ssize_t)nclass; i++) a->delta[i] = -1;
    a->key_of[0] = -1;
    Py_ssize_t nstates = 1, t = 0;
    a->nkeys = nkeys;
    a->tgt_off[0] = 0;
    for (Py_ssize_t k = 0; k < nkeys; k++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, k);
        PyObject *key = PyTuple_GET_ITEM(item, 0);
        int kind = PyUnicode_KIND(key);
        const void *data = PyUnicode_DATA(key);
        Py_ssize_t len = PyUnicode_GET_LENGTH(key);
        int32_t s = 0;
        for (Py_ssize_t i = 0; i < len; i++) {
            int32_t cls = char_class(a, PyUnicode_READ(kind, data, i));
            int32_t next = a->delta[(Py_ssize_t)s * nclass + cls];
            if (next < 0) {
                next = (int32_t)nstates++;
                for (int c = 0; c < nclass; c++) a->delta[(Py_ssize_t)next * nclass + c] = -1;
                a->key_of[next] = -1;
                a->delta[(Py_ssize_t)s * nclass + cls] = next;
            }
            s = next;
        }
        if (a->key_of[s] >= 0) { PyErr_SetString(PyExc_ValueError, "duplicate key"); goto fail; }
        a->key_of[s] = (int32_t)k;
        a->key_len[k] = (int32_t)len;
        PyObject *targets = PySequence_Fast(PyTuple_GET_ITEM(item, 1), "targets must be a sequence");
        if (!targets) goto fail;
        for (Py_ssize_t j = 0; j < PySequence_Fast_GET_SIZE(targets); j++) {
            PyObject *tg = PySequence_Fast_GET_ITEM(targets, j);
            long pid;
            int prefix;
            if (!PyTuple_Check(tg) || PyTuple_GET_SIZE(tg) != 2) {
                Py_DECREF(targets);
                PyErr_SetString(PyExc_TypeError, "each target must be (pattern id, is_prefix)");
                goto fail;
            }
            pid = PyLong_AsLong(PyTuple_GET_ITEM(tg, 0));
            prefix = PyObject_IsTrue(PyTuple_GET_ITEM(tg, 1));
            if ((pid == -1 && PyErr_Occurred()) || prefix < 0) { Py_DECREF(targets); goto fail; }
            if (t >= ntargets || pid < 0 || pid > INT32_MAX) { /* a sequence whose length changed */
                Py_DECREF(targets);
                PyErr_SetString(PyExc_ValueError, "bad targets");
                goto fail;
            }
            a->tgt_pid[t] = (int32_t)pid;
            a->tgt_prefix[t] = (uint8_t)prefix;
            t++;
        }
        Py_DECREF(targets);
        a->tgt_off[k + 1] = (int32_t)t;
    }
    a->nstates = nstates;
    if (compact(a) < 0) goto fail;
    Py_DECREF(fast);
    return 0;
fail:
    Py_DECREF(fast);
    automaton_free(a);
    return -1;
}

static int field_add(Field *f, int32_t pid, int32_t s, int32_t e) {
    int32_t idx = (int32_t)f->hs.n;
    if (ivec_push(&f->hs, s) < 0 || ivec_push(&f->he, e) < 0 || ivec_push(&f->hnext, -1) < 0) return -1;
    if (f->head[pid] < 0) {
        /* On the order list first: field_reset clears exactly the heads listed there. */
        if (ivec_push(&f->order, pid) < 0) return -1;
        f->head[pid] = idx;
        f->count[pid] = 1;
    } else {
        f->hnext.v[f->tail[pid]] = idx;
        f->count[pid]++;
    }
    f->tail[pid] = idx;
    return 0;
}

void field_reset(Field *f) {
    for (Py_ssize_t i = 0; i < f->order.n; i++) f->head[f->order.v[i]] = -1;
    f->order.n = f->hs.n = f->he.n = f->hnext.n = f->spaces.n = 0;
}

static inline int is_alnum(Py_UCS4 c) {
    if (c < 128) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    return Py_UNICODE_ISALNUM(c);
}

/* Engine._scan: every whole-word (or prefix) hit of the keys in text.
 *
 * A hit must start where the previous character is not alphanumeric, so instead of running an
 * Aho-Corasick automaton over every character, the trie is walked from each such word start only:
 * most walks end after a character or two, in the hot top of the trie. The hits are then put in the
 * order Aho-Corasick (and so the Python engine) reports them: by end, the longest first. */
/* The slot after slot s on character ch, or -1. Class 0 (in no key) never has a child. */
static inline int32_t step(const Automaton *a, int32_t s, Py_UCS4 ch) {
    int32_t c = char_class(a, ch);
    int32_t u = (a->node[s].base >> 1) + c;
    return c && a->node[u].check == s ? u : -1;
}

static const uint8_t ASCII_ALNUM[128] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1,
    ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1,
    ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1,
    ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,
    ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
};

#define SCAN_LOOP(CHAR)                                                                                 \
    do {                                                                                                \
        const CHAR *p = (const CHAR *)data;                                                             \
        int boundary = 1;                                                                               \
        for (Py_ssize_t i = 0; i < n; i++) {                                                            \
            Py_UCS4 ch = p[i];                                                                          \
            if (boundary) {                                                                             \
                int32_t t = ch < 128 ? a->root[ch] : step(a, 0, ch);                                    \
                for (Py_ssize_t j = i; t >= 0;) {                                                       \
                    int32_t base = node[t].base;                                                        \
                    if ((base & 1) && (ivec_push(found, key_of[t]) < 0 || ivec_push(found, (int32_t)i) < 0 || \
                                       ivec_push(found, (int32_t)j) < 0))                               \
                        return -1;                                                                      \
                    if (++j >= n) break;                                                                \
                    Py_UCS4 cj = p[j];                                                                  \
                    int32_t u = (base >> 1) + (cj < 128 ? a->ascii_class[cj] : char_class(a, cj));      \
                    t = node[u].check == t ? u : -1;                                                    \
                }                                                                                       \
            }                                                                                           \
            boundary = ch < 128 ? !ASCII_ALNUM[ch] : !Py_UNICODE_ISALNUM(ch);                           \
        }                                                                                               \
    } while (0)

int scan(const Automaton *a, PyObject *text, Field *f, IVec *found) {
    if (a->nkeys == 0) return 0;
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    const Node *node = a->node;
    const int32_t *key_of = a->key_of;
    found->n = 0;
    if (kind == PyUnicode_1BYTE_KIND) SCAN_LOOP(Py_UCS1);
    else if (kind == PyUnicode_2BYTE_KIND) SCAN_LOOP(Py_UCS2);
    else SCAN_LOOP(Py_UCS4);
    /* (key, start, last) triples, sorted by last then start: insertion sort, as walks from earlier
     * starts only rarely end after later ones. */
    int32_t *v = found->v;
    Py_ssize_t m = found->n / 3;
    for (Py_ssize_t x = 1; x < m; x++) {
        int32_t k = v[3 * x], st = v[3 * x + 1], last = v[3 * x + 2];
        Py_ssize_t y = x;
        while (y > 0 && (v[3 * (y - 1) + 2] > last || (v[3 * (y - 1) + 2] == last && v[3 * (y - 1) + 1] > st))) {
            memcpy(&v[3 * y], &v[3 * (y - 1)], 3 * sizeof(int32_t));
            y--;
        }
        v[3 * y] = k; v[3 * y + 1] = st; v[3 * y + 2] = last;
    }
    for (Py_ssize_t x = 0; x < m; x++) {
        int32_t k = v[3 * x];
        Py_ssize_t start = v[3 * x + 1], after = (Py_ssize_t)v[3 * x + 2] + 1;
        int whole = after >= n || !is_alnum(PyUnicode_READ(kind, data, after));
        for (int32_t t = a->tgt_off[k]; t < a->tgt_off[k + 1]; t++) {
            Py_ssize_t stop;
            if (a->tgt_prefix[t]) {
                stop = after;
                while (stop < n && is_alnum(PyUnicode_READ(kind, data, stop))) stop++;
            } else if (whole) {
                stop = after;
            } else {
                continue;
            }
            if (field_add(f, a->tgt_pid[t], (int32_t)start, (int32_t)stop) < 0) return -1;
        }
    }
    return 0;
}

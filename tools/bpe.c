/*
bpe.c — learns a SentencePiece-style BPE vocabulary from text and writes it as
llama2.c's tokenizer.bin, the layout runq.c reads. Not a program: tools/train.c
includes it after runq.c (whose die, xcalloc and tokenizer it relies on) and
calls bpe_train for `train tokenizer`; test/test_bpe.c does the same.

The vocabulary (the layout of Llama 2's tokenizer and of tok512):
    0 <unk>, 1 <s> (BOS), 2 </s> (EOS), 3..258 the byte pieces <0x00>..<0xFF>,
    then the characters covering 99.95% of the text, most frequent first
    (rarer ones go through byte fallback, as SentencePiece's character_coverage),
    then the merges in the order they were learned, until vocab_size pieces.
Scores: merge k scores -k and characters score below every merge, so runq's
encoder, which keeps merging the adjacent pair that spells the best-scoring
piece, replays the merges in the order they were learned.

Words, as runq's encoder sees the text: a word is a run of characters with the
space before it, if any; a newline, tab, carriage return, vertical tab or form
feed is a word of its own. So no piece holds a space except at its start, and
none crosses a line. A document — the text, or a part after a blank line, as
tools/train.c cuts the corpus — is encoded on its own, and encode's dummy
prefix gives its first word a space; the first word of any other line has none.
Within a word, as SentencePiece's split_by_unicode_script and Llama 2's
split_digits do, letters and punctuation never share a piece and digits stay
single: " heaven;" is " heaven" and ";", so the vocabulary spends its pieces on
words, not on every word with every mark after it.

The algorithm is Sennrich et al.'s, made incremental: count each distinct word
once with its frequency; count adjacent symbol pairs over the distinct words,
weighted; then repeatedly merge the most frequent pair in the words that hold
it, updating only the counts of the pairs that change, and find the next best
pair with a max-heap whose stale entries are skipped. Ties go to the smaller
left id, then the smaller right id: nothing depends on hash order or memory
addresses, so the same text gives the same bytes every time.
*/

#define BPE_FIRST_BYTE 3               // ids 3..258 are <0x00>..<0xFF>
#define BPE_FIRST_CHARACTER 259        // then the characters, then the merges
#define BPE_MAX_VOCAB 65535            // every id fits in 16 bits
#define BPE_CHARACTER_COVERAGE 0.9995  // SentencePiece's default for small alphabets
#define BPE_MAX_PIECE_CHARACTERS 16    // SentencePiece's max_sentencepiece_length
#define BPE_BARRIER (-1)               // a character left to byte fallback: no pair spans it

// ----------------------------------------------------------------------------
// Growable arrays (out of memory dies, as runq's xcalloc does)

static void *bpe_grow(void *items, int *capacity, size_t item_size) {
    if (*capacity > INT_MAX / 2) die("bpe: more than %d items", INT_MAX / 2);
    int grown = *capacity ? *capacity * 2 : 16;
    void *moved = realloc(items, (size_t)grown * item_size);
    if (!moved) die("bpe: out of memory growing an array to %d items of %zu bytes", grown, item_size);
    *capacity = grown;
    return moved;
}

typedef struct {
    int *items;
    int count, capacity;
} BpeIntList;

static void bpe_int_list_push(BpeIntList *list, int value) {
    if (list->count == list->capacity) list->items = bpe_grow(list->items, &list->capacity, sizeof(int));
    list->items[list->count++] = value;
}

// ----------------------------------------------------------------------------
// Hash indexes: open addressing with linear probing, at most half full. They
// only answer "which entry is this?"; entries are numbered in insertion order,
// so nothing downstream sees the hash order.

// Byte strings -> entry number (words of the text, pieces of the vocabulary).
typedef struct {
    const char **strings;    // (count,) not NUL-terminated; owned by the caller
    int *lengths;            // (count,)
    int count, capacity;
    int *slots;              // (n_slots,) entry + 1, 0 = empty
    size_t n_slots;          // a power of two
} BpeStringIndex;

static uint64_t bpe_hash_bytes(const char *bytes, int length) {
    uint64_t hash = 14695981039346656037ull;   // FNV-1a
    for (int i = 0; i < length; i++) hash = (hash ^ (unsigned char)bytes[i]) * 1099511628211ull;
    return hash;
}

// The slot holding the string, or the empty slot where it would go.
static size_t bpe_string_slot(const BpeStringIndex *index, const char *bytes, int length) {
    size_t mask = index->n_slots - 1;
    for (size_t slot = bpe_hash_bytes(bytes, length) & mask;; slot = (slot + 1) & mask) {
        int entry = index->slots[slot] - 1;
        if (entry < 0) return slot;
        if (index->lengths[entry] == length && memcmp(index->strings[entry], bytes, (size_t)length) == 0) return slot;
    }
}

static int bpe_string_find(const BpeStringIndex *index, const char *bytes, int length) {
    if (index->n_slots == 0) return -1;
    return index->slots[bpe_string_slot(index, bytes, length)] - 1;
}

static void bpe_string_rehash(BpeStringIndex *index, size_t n_slots) {
    free(index->slots);
    index->slots = xcalloc(n_slots, sizeof(int), "bpe string index");
    index->n_slots = n_slots;
    for (int entry = 0; entry < index->count; entry++)
        index->slots[bpe_string_slot(index, index->strings[entry], index->lengths[entry])] = entry + 1;
}

// Adds a string that is not in the index yet; returns its entry number.
static int bpe_string_add(BpeStringIndex *index, const char *bytes, int length) {
    if (index->count == index->capacity) {   // both arrays grow to the same new capacity
        int capacity = index->capacity;
        index->strings = bpe_grow(index->strings, &capacity, sizeof(char *));
        index->lengths = bpe_grow(index->lengths, &index->capacity, sizeof(int));
    }
    int entry = index->count++;
    index->strings[entry] = bytes;
    index->lengths[entry] = length;
    if ((size_t)index->count * 2 > index->n_slots) bpe_string_rehash(index, index->n_slots ? index->n_slots * 2 : 1024);
    else index->slots[bpe_string_slot(index, bytes, length)] = entry + 1;
    return entry;
}

static void bpe_string_index_free(BpeStringIndex *index) {
    free(index->strings);
    free(index->lengths);
    free(index->slots);
}

// 64-bit keys -> entry number (characters by their bytes, pairs by their ids).
typedef struct {
    uint64_t *keys;          // (count,)
    int count, capacity;
    int *slots;              // (n_slots,) entry + 1, 0 = empty
    size_t n_slots;          // a power of two
} BpeKeyIndex;

static uint64_t bpe_hash_key(uint64_t key) {   // splitmix64's finalizer
    key = (key ^ (key >> 30)) * 0xbf58476d1ce4e5b9ull;
    key = (key ^ (key >> 27)) * 0x94d049bb133111ebull;
    return key ^ (key >> 31);
}

static size_t bpe_key_slot(const BpeKeyIndex *index, uint64_t key) {
    size_t mask = index->n_slots - 1;
    for (size_t slot = bpe_hash_key(key) & mask;; slot = (slot + 1) & mask) {
        int entry = index->slots[slot] - 1;
        if (entry < 0 || index->keys[entry] == key) return slot;
    }
}

static int bpe_key_find(const BpeKeyIndex *index, uint64_t key) {
    if (index->n_slots == 0) return -1;
    return index->slots[bpe_key_slot(index, key)] - 1;
}

static void bpe_key_rehash(BpeKeyIndex *index, size_t n_slots) {
    free(index->slots);
    index->slots = xcalloc(n_slots, sizeof(int), "bpe key index");
    index->n_slots = n_slots;
    for (int entry = 0; entry < index->count; entry++) index->slots[bpe_key_slot(index, index->keys[entry])] = entry + 1;
}

// Adds a key that is not in the index yet; returns its entry number.
static int bpe_key_add(BpeKeyIndex *index, uint64_t key) {
    if (index->count == index->capacity) index->keys = bpe_grow(index->keys, &index->capacity, sizeof(uint64_t));
    int entry = index->count++;
    index->keys[entry] = key;
    if ((size_t)index->count * 2 > index->n_slots) bpe_key_rehash(index, index->n_slots ? index->n_slots * 2 : 1024);
    else index->slots[bpe_key_slot(index, key)] = entry + 1;
    return entry;
}

static void bpe_key_index_free(BpeKeyIndex *index) {
    free(index->keys);
    free(index->slots);
}

// ----------------------------------------------------------------------------
// Characters exactly as runq's encode cuts them: a byte and the continuation
// bytes after it, at most 4 bytes. A cut that is not one valid UTF-8 code point
// can never be a piece: the encoder sends its bytes through byte fallback.

static int bpe_unit_length(const char *text, size_t length, size_t at) {
    int unit = 1;
    while (unit < 4 && at + (size_t)unit < length && ((unsigned char)text[at + (size_t)unit] & 0xC0) == 0x80) unit++;
    return unit;
}

static int bpe_is_code_point(const char *bytes, int length) {
    const unsigned char *b = (const unsigned char *)bytes;
    if (b[0] == 0) return 0;   // NUL ends a C string: never a piece
    if (b[0] < 0x80) return length == 1;
    if (b[0] < 0xC2 || b[0] > 0xF4) return 0;   // a continuation byte, an overlong lead, or beyond U+10FFFF
    int expected = b[0] < 0xE0 ? 2 : b[0] < 0xF0 ? 3 : 4;
    if (length != expected) return 0;
    if (b[0] == 0xE0 && b[1] < 0xA0) return 0;                      // overlong 3-byte form
    if (b[0] == 0xED && b[1] >= 0xA0) return 0;                     // UTF-16 surrogates
    if (b[0] == 0xF0 && b[1] < 0x90) return 0;                      // overlong 4-byte form
    if (b[0] == 0xF4 && b[1] >= 0x90) return 0;                     // beyond U+10FFFF
    return 1;
}

// What a character may share a piece with: letters with letters, marks with
// marks; a digit with nothing (numbers go digit by digit). A leading space
// joins anything. Without Unicode tables, every code point that is not ASCII
// counts as a letter except the common punctuation and symbol blocks.
enum { BPE_SPACE, BPE_LETTER, BPE_DIGIT, BPE_MARK };

static int bpe_character_class(const char *bytes, int length) {
    const unsigned char *b = (const unsigned char *)bytes;
    if (b[0] == ' ') return BPE_SPACE;
    if (b[0] < 0x80) return (unsigned)((b[0] | 0x20) - 'a') < 26 ? BPE_LETTER : (unsigned)(b[0] - '0') < 10 ? BPE_DIGIT : BPE_MARK;
    uint32_t code_point = length == 2 ? (uint32_t)(b[0] & 0x1F) << 6 | (b[1] & 0x3F)
                        : length == 3 ? (uint32_t)(b[0] & 0x0F) << 12 | (uint32_t)(b[1] & 0x3F) << 6 | (b[2] & 0x3F)
                        : 0x10000;   // 4 bytes: emoji and rare scripts, letters here
    int mark = (code_point >= 0x80 && code_point <= 0xBF) || code_point == 0xD7 || code_point == 0xF7
            || (code_point >= 0x2000 && code_point <= 0x2BFF)    // punctuation, currency, arrows, maths, shapes
            || (code_point >= 0x3000 && code_point <= 0x303F)    // CJK punctuation
            || (code_point >= 0xFF01 && code_point <= 0xFF0F);   // fullwidth punctuation
    return mark ? BPE_MARK : BPE_LETTER;
}

static uint64_t bpe_unit_key(const char *bytes, int length) {   // big-endian: key order is code point order
    uint64_t key = 0;
    for (int i = 0; i < length; i++) key = key << 8 | (unsigned char)bytes[i];
    return key;
}

// ----------------------------------------------------------------------------
// The trainer's state

typedef struct {
    int left, right;         // piece ids, left then right
    int64_t count;           // occurrences, each word weighted by its frequency
    BpeIntList words;        // words that held the pair at some time (may repeat, may be stale)
    int changed_round;       // the last round that changed count
    int blocked;             // 1 when it can never become a piece (too long, or spells an existing piece)
} BpePair;

typedef struct {
    int64_t count;           // the pair's count when this entry was pushed
    int pair;
} BpeHeapEntry;

typedef struct {
    // distinct words of the text, in order of first appearance
    BpeStringIndex words;    // strings point into the text, or into prefixed_words
    char **prefixed_words;   // (n_prefixed,) owned: a document's first word with the dummy-prefix space
    int n_prefixed, prefixed_capacity;
    int64_t *word_counts;    // (n_words,) occurrences
    size_t *word_starts;     // (n_words,) where each word's symbols begin in symbols
    int *word_lengths;       // (n_words,) current number of symbols
    int *word_visited;       // (n_words,) the last round that merged in the word
    int *symbols;            // every word's piece ids, BPE_BARRIER for byte-fallback characters
    int word_capacity;

    // the vocabulary so far: entry number = piece id; strings owned here
    BpeStringIndex pieces;
    int *piece_characters;   // (n_pieces,) code points in each piece
    int *piece_classes;      // (n_pieces,) BPE_SPACE only for " ", else its first character's after a space
    int n_characters;        // pieces BPE_FIRST_CHARACTER .. + n_characters - 1 are characters
    int piece_capacity;

    // adjacent pairs and the max-heap of (count, pair), stale entries included
    BpeKeyIndex pair_index;  // key left << 32 | right
    BpePair *pairs;
    int pair_capacity;
    BpeHeapEntry *heap;
    int heap_count, heap_capacity;
    BpeIntList changed;      // pairs whose count changed this round
    int round;               // 1 for the first count, then one per merge
} BpeTrainer;

static void bpe_free(BpeTrainer *t) {
    bpe_string_index_free(&t->words);
    for (int i = 0; i < t->n_prefixed; i++) free(t->prefixed_words[i]);
    free(t->prefixed_words);
    free(t->word_counts);
    free(t->word_starts);
    free(t->word_lengths);
    free(t->word_visited);
    free(t->symbols);
    for (int id = 0; id < t->pieces.count; id++) free((char *)t->pieces.strings[id]);
    bpe_string_index_free(&t->pieces);
    free(t->piece_characters);
    free(t->piece_classes);
    for (int p = 0; p < t->pair_index.count; p++) free(t->pairs[p].words.items);
    bpe_key_index_free(&t->pair_index);
    free(t->pairs);
    free(t->heap);
    free(t->changed.items);
    memset(t, 0, sizeof *t);
}

// ----------------------------------------------------------------------------
// Words: split the text and count each distinct word

static int bpe_is_lone_whitespace(char c) {
    return c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f';
}

// The word at or after *start (which moves past NULs, which belong to no word).
// Returns its length in bytes, 0 at the end of the text.
static size_t bpe_next_word(const char *text, size_t length, size_t *start) {
    size_t at = *start;
    while (at < length && text[at] == '\0') at++;
    *start = at;
    if (at == length) return 0;
    size_t end = at + (size_t)bpe_unit_length(text, length, at);   // a space, if any, opens the word
    if (bpe_is_lone_whitespace(text[at])) return end - at;
    while (end < length && text[end] != ' ' && text[end] != '\0' && !bpe_is_lone_whitespace(text[end]))
        end += (size_t)bpe_unit_length(text, length, end);
    return end - at;
}

// One more occurrence of the word; bytes must outlive the trainer.
static void bpe_count_word(BpeTrainer *t, const char *bytes, int length) {
    int word = bpe_string_find(&t->words, bytes, length);
    if (word < 0) {
        word = bpe_string_add(&t->words, bytes, length);
        if (word == t->word_capacity) t->word_counts = bpe_grow(t->word_counts, &t->word_capacity, sizeof(int64_t));
        t->word_counts[word] = 0;
    }
    t->word_counts[word]++;
}

// A document's first word, when it starts with no space, as encode sees it:
// after the dummy-prefix space.
static void bpe_count_prefixed_word(BpeTrainer *t, const char *bytes, int length) {
    char *prefixed = xcalloc((size_t)length + 1, 1, "bpe word");
    prefixed[0] = ' ';
    memcpy(prefixed + 1, bytes, (size_t)length);
    int known = t->words.count;
    bpe_count_word(t, prefixed, length + 1);
    if (t->words.count == known) { free(prefixed); return; }   // counted before: the index holds an older copy
    if (t->n_prefixed == t->prefixed_capacity)
        t->prefixed_words = bpe_grow(t->prefixed_words, &t->prefixed_capacity, sizeof(char *));
    t->prefixed_words[t->n_prefixed++] = prefixed;
}

// Documents start at the text's start and after "\n\n"; tools/train.c skips
// the newlines before one and encodes it on its own.
static void bpe_count_words(BpeTrainer *t, const char *text, size_t length) {
    size_t at = 0, word_length;
    int document_start = 1;
    while ((word_length = bpe_next_word(text, length, &at)) > 0) {
        const char *word = text + at;
        if (!document_start) {
            bpe_count_word(t, word, (int)word_length);
            document_start = word[0] == '\n' && word[-1] == '\n';
        } else if (word[0] == '\n' || word[0] == '\r') {
            bpe_count_word(t, word, (int)word_length);   // still before the document
        } else {
            // the dummy-prefix space joins a first word that has none; before
            // a space or a tab it is a piece of its own, and the word unchanged
            if (word[0] == ' ' || bpe_is_lone_whitespace(word[0])) bpe_count_word(t, word, (int)word_length);
            else bpe_count_prefixed_word(t, word, (int)word_length);
            document_start = 0;
        }
        at += word_length;
    }
}

// ----------------------------------------------------------------------------
// The vocabulary's first pieces: special, bytes, characters

static int bpe_add_piece(BpeTrainer *t, char *owned_bytes, int length, int n_code_points, int piece_class) {
    int id = bpe_string_add(&t->pieces, owned_bytes, length);
    if (id == t->piece_capacity) {   // both arrays grow to the same new capacity
        int capacity = t->piece_capacity;
        t->piece_characters = bpe_grow(t->piece_characters, &capacity, sizeof(int));
        t->piece_classes = bpe_grow(t->piece_classes, &t->piece_capacity, sizeof(int));
    }
    t->piece_characters[id] = n_code_points;
    t->piece_classes[id] = piece_class;
    return id;
}

static char *bpe_copy(const char *bytes, int length) {
    char *copy = xcalloc((size_t)length + 1, 1, "bpe piece");
    memcpy(copy, bytes, (size_t)length);
    return copy;
}

static void bpe_add_reserved_pieces(BpeTrainer *t) {
    const char *special[] = { "<unk>", "<s>", "</s>" };
    for (int i = 0; i < 3; i++) {
        int length = (int)strlen(special[i]);
        bpe_add_piece(t, bpe_copy(special[i], length), length, 1, BPE_MARK);
    }
    for (int byte = 0; byte < 256; byte++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", byte);
        bpe_add_piece(t, bpe_copy(name, 6), 6, 1, BPE_MARK);
    }
}

typedef struct {
    uint64_t key;            // the character's bytes, big-endian
    int64_t count;
} BpeCharacter;

static int bpe_compare_characters(const void *a, const void *b) {   // most frequent first, then code point order
    const BpeCharacter *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return x->key < y->key ? -1 : x->key > y->key;
}

static void bpe_add_character(BpeTrainer *t, uint64_t key) {
    char bytes[4];
    int length = 0;
    for (int shift = 24; shift >= 0; shift -= 8)   // no byte of a character is 0
        if ((key >> shift) & 0xFF) bytes[length++] = (char)((key >> shift) & 0xFF);
    bpe_add_piece(t, bpe_copy(bytes, length), length, 1, bpe_character_class(bytes, length));
    t->n_characters++;
}

// Keeps the most frequent characters until they cover BPE_CHARACTER_COVERAGE of
// all characters; a space is always kept (encode's dummy prefix looks it up).
static void bpe_choose_characters(BpeTrainer *t) {
    BpeKeyIndex seen = {0};
    BpeCharacter *tally = NULL;
    int capacity = 0;
    int64_t total = 0;
    for (int w = 0; w < t->words.count; w++) {
        const char *word = t->words.strings[w];
        size_t length = (size_t)t->words.lengths[w];
        for (size_t at = 0; at < length;) {
            int unit = bpe_unit_length(word, length, at);
            if (bpe_is_code_point(word + at, unit)) {
                uint64_t key = bpe_unit_key(word + at, unit);
                int entry = bpe_key_find(&seen, key);
                if (entry < 0) {
                    entry = bpe_key_add(&seen, key);
                    if (entry == capacity) tally = bpe_grow(tally, &capacity, sizeof *tally);
                    tally[entry] = (BpeCharacter){ key, 0 };
                }
                tally[entry].count += t->word_counts[w];
                total += t->word_counts[w];
            }
            at += (size_t)unit;
        }
    }
    if (seen.count > 0) qsort(tally, (size_t)seen.count, sizeof *tally, bpe_compare_characters);
    int64_t covered = 0;
    int space_kept = 0;
    for (int i = 0; i < seen.count && (double)covered < BPE_CHARACTER_COVERAGE * (double)total; i++) {
        bpe_add_character(t, tally[i].key);
        covered += tally[i].count;
        space_kept |= tally[i].key == ' ';
    }
    if (!space_kept) bpe_add_character(t, ' ');
    free(tally);
    bpe_key_index_free(&seen);
}

// ----------------------------------------------------------------------------
// Each word as a sequence of symbols, first one per character

static void bpe_build_word_symbols(BpeTrainer *t) {
    int n_words = t->words.count;
    t->word_starts = xcalloc((size_t)n_words, sizeof(size_t), "bpe words");
    t->word_lengths = xcalloc((size_t)n_words, sizeof(int), "bpe words");
    t->word_visited = xcalloc((size_t)n_words, sizeof(int), "bpe words");
    size_t total = 0;
    for (int w = 0; w < n_words; w++) total += (size_t)t->words.lengths[w];   // bytes bound the characters
    t->symbols = xcalloc(total, sizeof(int), "bpe symbols");
    size_t next = 0;
    for (int w = 0; w < n_words; w++) {
        const char *word = t->words.strings[w];
        size_t length = (size_t)t->words.lengths[w];
        t->word_starts[w] = next;
        for (size_t at = 0; at < length;) {
            int unit = bpe_unit_length(word, length, at);
            int id = bpe_is_code_point(word + at, unit) ? bpe_string_find(&t->pieces, word + at, unit) : -1;
            t->symbols[next++] = id >= BPE_FIRST_CHARACTER ? id : BPE_BARRIER;
            at += (size_t)unit;
        }
        t->word_lengths[w] = (int)(next - t->word_starts[w]);
    }
}

// ----------------------------------------------------------------------------
// Pair counts, kept up to date by the changes each merge makes

static int bpe_find_or_add_pair(BpeTrainer *t, int left, int right) {
    uint64_t key = (uint64_t)left << 32 | (uint32_t)right;
    int p = bpe_key_find(&t->pair_index, key);
    if (p >= 0) return p;
    p = bpe_key_add(&t->pair_index, key);
    if (p == t->pair_capacity) t->pairs = bpe_grow(t->pairs, &t->pair_capacity, sizeof(BpePair));
    t->pairs[p] = (BpePair){ .left = left, .right = right };
    return p;
}

// count(left, right) += delta, for occurrences in `word`
static void bpe_add_to_pair(BpeTrainer *t, int left, int right, int64_t delta, int word) {
    if (left == BPE_BARRIER || right == BPE_BARRIER) return;
    int p = bpe_find_or_add_pair(t, left, right);
    BpePair *pair = &t->pairs[p];
    pair->count += delta;
    if (delta > 0 && (pair->words.count == 0 || pair->words.items[pair->words.count - 1] != word))
        bpe_int_list_push(&pair->words, word);
    if (pair->changed_round != t->round) {
        pair->changed_round = t->round;
        bpe_int_list_push(&t->changed, p);
    }
}

// a is popped before b: the larger count, then the smaller left id, then the smaller right id
static int bpe_heap_before(const BpeTrainer *t, BpeHeapEntry a, BpeHeapEntry b) {
    if (a.count != b.count) return a.count > b.count;
    const BpePair *x = &t->pairs[a.pair], *y = &t->pairs[b.pair];
    if (x->left != y->left) return x->left < y->left;
    return x->right < y->right;
}

static void bpe_heap_push(BpeTrainer *t, BpeHeapEntry entry) {
    if (t->heap_count == t->heap_capacity) t->heap = bpe_grow(t->heap, &t->heap_capacity, sizeof(BpeHeapEntry));
    int i = t->heap_count++;
    while (i > 0 && bpe_heap_before(t, entry, t->heap[(i - 1) / 2])) {
        t->heap[i] = t->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    t->heap[i] = entry;
}

static BpeHeapEntry bpe_heap_pop(BpeTrainer *t) {
    BpeHeapEntry top = t->heap[0], last = t->heap[--t->heap_count];
    int i = 0;
    for (;;) {
        int child = 2 * i + 1;
        if (child >= t->heap_count) break;
        if (child + 1 < t->heap_count && bpe_heap_before(t, t->heap[child + 1], t->heap[child])) child++;
        if (!bpe_heap_before(t, t->heap[child], last)) break;
        t->heap[i] = t->heap[child];
        i = child;
    }
    if (t->heap_count > 0) t->heap[i] = last;
    return top;
}

// The pairs changed this round go (back) on the heap with their new counts;
// their older entries become stale.
static void bpe_push_changed_pairs(BpeTrainer *t) {
    for (int i = 0; i < t->changed.count; i++) {
        int p = t->changed.items[i];
        if (t->pairs[p].count > 0 && !t->pairs[p].blocked) bpe_heap_push(t, (BpeHeapEntry){ t->pairs[p].count, p });
    }
    t->changed.count = 0;
}

static void bpe_count_pairs(BpeTrainer *t) {
    t->round = 1;
    for (int w = 0; w < t->words.count; w++) {
        const int *symbols = t->symbols + t->word_starts[w];
        for (int i = 0; i + 1 < t->word_lengths[w]; i++)
            bpe_add_to_pair(t, symbols[i], symbols[i + 1], t->word_counts[w], w);
    }
    bpe_push_changed_pairs(t);
}

// ----------------------------------------------------------------------------
// Merging

static int bpe_classes_join(int left_class, int right_class) {
    if (left_class == BPE_SPACE) return 1;
    return left_class == right_class && left_class != BPE_DIGIT;
}

// left + right as a new NUL-terminated string, or NULL when it cannot be a
// piece: classes that do not join, too long, or it spells a piece that exists
// (the same string reached by another split), which would make two ids spell
// one string.
static char *bpe_joined_piece(const BpeTrainer *t, int left, int right) {
    if (!bpe_classes_join(t->piece_classes[left], t->piece_classes[right])) return NULL;
    if (t->piece_characters[left] + t->piece_characters[right] > BPE_MAX_PIECE_CHARACTERS) return NULL;
    int a = t->pieces.lengths[left], b = t->pieces.lengths[right];
    char *joined = xcalloc((size_t)(a + b) + 1, 1, "bpe piece");
    memcpy(joined, t->pieces.strings[left], (size_t)a);
    memcpy(joined + a, t->pieces.strings[right], (size_t)b);
    if (bpe_string_find(&t->pieces, joined, a + b) >= 0) { free(joined); return NULL; }
    return joined;
}

// The most frequent pair that can become a piece, as a new piece id; -1 when none is left.
static int bpe_next_merge(BpeTrainer *t, int *pair_index) {
    while (t->heap_count > 0) {
        BpeHeapEntry top = bpe_heap_pop(t);
        BpePair *pair = &t->pairs[top.pair];
        if (pair->blocked || top.count != pair->count) continue;   // stale entry
        char *joined = bpe_joined_piece(t, pair->left, pair->right);
        if (!joined) { pair->blocked = 1; continue; }
        *pair_index = top.pair;
        int length = t->pieces.lengths[pair->left] + t->pieces.lengths[pair->right];
        int joined_class = t->piece_classes[pair->left] == BPE_SPACE ? t->piece_classes[pair->right] : t->piece_classes[pair->left];
        return bpe_add_piece(t, joined, length, t->piece_characters[pair->left] + t->piece_characters[pair->right], joined_class);
    }
    return -1;
}

// Replaces every (left, right) in the word by merged, left to right as runq's
// encoder does, and moves the word's weight from the pairs it breaks (the
// pair itself and its neighbours') to the pairs it makes.
static void bpe_merge_in_word(BpeTrainer *t, int word, int left, int right, int merged) {
    int *symbols = t->symbols + t->word_starts[word];
    int n = t->word_lengths[word], kept = 0;
    int64_t weight = t->word_counts[word];
    for (int i = 0; i < n;) {
        if (i + 1 < n && symbols[i] == left && symbols[i + 1] == right) {
            if (kept > 0) {   // the symbol before, already rewritten
                bpe_add_to_pair(t, symbols[kept - 1], left, -weight, word);
                bpe_add_to_pair(t, symbols[kept - 1], merged, weight, word);
            }
            if (i + 2 < n) {  // the symbol after, not yet rewritten
                bpe_add_to_pair(t, right, symbols[i + 2], -weight, word);
                bpe_add_to_pair(t, merged, symbols[i + 2], weight, word);
            }
            bpe_add_to_pair(t, left, right, -weight, word);
            symbols[kept++] = merged;
            i += 2;
        } else {
            symbols[kept++] = symbols[i++];
        }
    }
    t->word_lengths[word] = kept;
}

static void bpe_merge(BpeTrainer *t, int pair_index, int merged) {
    t->round++;
    int left = t->pairs[pair_index].left, right = t->pairs[pair_index].right;
    BpeIntList words = t->pairs[pair_index].words;   // taken: this pair's count ends at 0
    t->pairs[pair_index].words = (BpeIntList){0};
    for (int i = 0; i < words.count; i++) {
        int word = words.items[i];
        if (t->word_visited[word] == t->round) continue;   // listed twice
        t->word_visited[word] = t->round;
        bpe_merge_in_word(t, word, left, right, merged);
    }
    free(words.items);
    bpe_push_changed_pairs(t);
}

// ----------------------------------------------------------------------------
// Training and the tokenizer.bin blob

// Returns NULL, or what is wrong with the request.
static const char *bpe_learn(BpeTrainer *t, const char *text, size_t length, int vocab_size) {
    if (!text || length == 0) return "the text is empty";
    if (length > INT_MAX) return "the text is larger than 2 GB";
    if (vocab_size > BPE_MAX_VOCAB) return "vocab_size is above 65535 (ids must fit in 16 bits)";
    bpe_count_words(t, text, length);
    if (t->words.count == 0) return "the text has no characters, only NUL bytes";
    bpe_add_reserved_pieces(t);
    bpe_choose_characters(t);
    if (vocab_size < t->pieces.count)
        return "vocab_size is too small: it must hold the 259 special and byte pieces and every character "
               "that covers 99.95% of the text";
    bpe_build_word_symbols(t);
    bpe_count_pairs(t);
    while (t->pieces.count < vocab_size) {
        int pair_index, merged = bpe_next_merge(t, &pair_index);
        if (merged < 0) return "vocab_size is too large for this text: it runs out of pairs to merge";
        bpe_merge(t, pair_index, merged);
    }
    return NULL;
}

static float bpe_piece_score(const BpeTrainer *t, int id) {
    int first_merge = BPE_FIRST_CHARACTER + t->n_characters;
    int n_merges = t->pieces.count - first_merge;
    if (id < BPE_FIRST_CHARACTER) return 0.0f;
    if (id < first_merge) return (float)-(n_merges + (id - BPE_FIRST_CHARACTER));   // below every merge
    return (float)-(id - first_merge);
}

// llama2.c's tokenizer.bin: int32 max_token_length, then per piece float32
// score, int32 length, bytes (little-endian, as runq reads it).
static uint8_t *bpe_write_blob(const BpeTrainer *t, size_t *size) {
    int32_t max_length = 0;
    size_t total = 4;
    for (int id = 0; id < t->pieces.count; id++) {
        if (t->pieces.lengths[id] > max_length) max_length = t->pieces.lengths[id];
        total += 8 + (size_t)t->pieces.lengths[id];
    }
    uint8_t *blob = xcalloc(total, 1, "tokenizer.bin");
    memcpy(blob, &max_length, 4);
    size_t at = 4;
    for (int id = 0; id < t->pieces.count; id++) {
        float score = bpe_piece_score(t, id);
        int32_t length = t->pieces.lengths[id];
        memcpy(blob + at, &score, 4);
        memcpy(blob + at + 4, &length, 4);
        memcpy(blob + at + 8, t->pieces.strings[id], (size_t)length);
        at += 8 + (size_t)length;
    }
    *size = total;
    return blob;
}

// Learns a SentencePiece-style BPE vocabulary of exactly vocab_size pieces from
// text. Returns a malloc'd llama2.c tokenizer.bin blob and its size, or NULL
// with *error set to a clear message.
static uint8_t *bpe_train(const char *text, size_t length, int vocab_size, size_t *blob_size, const char **error) {
    BpeTrainer trainer;
    memset(&trainer, 0, sizeof trainer);
    *error = bpe_learn(&trainer, text, length, vocab_size);
    *blob_size = 0;
    uint8_t *blob = *error ? NULL : bpe_write_blob(&trainer, blob_size);
    bpe_free(&trainer);
    return blob;
}

// test_bpe.c — the BPE tokenizer trainer (tools/bpe.c): the vocabulary's
// layout, that runq's encoder replays the learned merges, round trips through
// encode and decode, determinism, compression on English, refused requests.
// Not a test of runq's encoder on real vocabularies (test_tokenizer.c is).
#define TESTING
#include "../runq.c"
#include "../tools/bpe.c"
#include "check.h"

// Genesis 1 and 2, King James Version (public domain): the training text
static const char genesis_1_2[] =
    "In the beginning God created the heaven and the earth.\n"
    "And the earth was without form, and void; and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters.\n"
    "And God said, Let there be light: and there was light.\n"
    "And God saw the light, that it was good: and God divided the light from the darkness.\n"
    "And God called the light Day, and the darkness he called Night. And the evening and the morning were the first day.\n"
    "And God said, Let there be a firmament in the midst of the waters, and let it divide the waters from the waters.\n"
    "And God made the firmament, and divided the waters which were under the firmament from the waters which were above the firmament: and it was so.\n"
    "And God called the firmament Heaven. And the evening and the morning were the second day.\n"
    "And God said, Let the waters under the heaven be gathered together unto one place, and let the dry land appear: and it was so.\n"
    "And God called the dry land Earth; and the gathering together of the waters called he Seas: and God saw that it was good.\n"
    "And God said, Let the earth bring forth grass, the herb yielding seed, and the fruit tree yielding fruit after his kind, whose seed is in itself, upon the earth: and it was so.\n"
    "And the earth brought forth grass, and herb yielding seed after his kind, and the tree yielding fruit, whose seed was in itself, after his kind: and God saw that it was good.\n"
    "And the evening and the morning were the third day.\n"
    "And God said, Let there be lights in the firmament of the heaven to divide the day from the night; and let them be for signs, and for seasons, and for days, and years:\n"
    "And let them be for lights in the firmament of the heaven to give light upon the earth: and it was so.\n"
    "And God made two great lights; the greater light to rule the day, and the lesser light to rule the night: he made the stars also.\n"
    "And God set them in the firmament of the heaven to give light upon the earth,\n"
    "And to rule over the day and over the night, and to divide the light from the darkness: and God saw that it was good.\n"
    "And the evening and the morning were the fourth day.\n"
    "And God said, Let the waters bring forth abundantly the moving creature that hath life, and fowl that may fly above the earth in the open firmament of heaven.\n"
    "And God created great whales, and every living creature that moveth, which the waters brought forth abundantly, after their kind, and every winged fowl after his kind: and God saw that it was good.\n"
    "And God blessed them, saying, Be fruitful, and multiply, and fill the waters in the seas, and let fowl multiply in the earth.\n"
    "And the evening and the morning were the fifth day.\n"
    "And God said, Let the earth bring forth the living creature after his kind, cattle, and creeping thing, and beast of the earth after his kind: and it was so.\n"
    "And God made the beast of the earth after his kind, and cattle after their kind, and every thing that creepeth upon the earth after his kind: and God saw that it was good.\n"
    "And God said, Let us make man in our image, after our likeness: and let them have dominion over the fish of the sea, and over the fowl of the air, and over the cattle, and over all the earth, and over every creeping thing that creepeth upon the earth.\n"
    "So God created man in his own image, in the image of God created he him; male and female created he them.\n"
    "And God blessed them, and God said unto them, Be fruitful, and multiply, and replenish the earth, and subdue it: and have dominion over the fish of the sea, and over the fowl of the air, and over every living thing that moveth upon the earth.\n"
    "And God said, Behold, I have given you every herb bearing seed, which is upon the face of all the earth, and every tree, in the which is the fruit of a tree yielding seed; to you it shall be for meat.\n"
    "And to every beast of the earth, and to every fowl of the air, and to every thing that creepeth upon the earth, wherein there is life, I have given every green herb for meat: and it was so.\n"
    "And God saw every thing that he had made, and, behold, it was very good. And the evening and the morning were the sixth day.\n"
    "Thus the heavens and the earth were finished, and all the host of them.\n"
    "And on the seventh day God ended his work which he had made; and he rested on the seventh day from all his work which he had made.\n"
    "And God blessed the seventh day, and sanctified it: because that in it he had rested from all his work which God created and made.\n"
    "These are the generations of the heavens and of the earth when they were created, in the day that the LORD God made the earth and the heavens,\n"
    "And every plant of the field before it was in the earth, and every herb of the field before it grew: for the LORD God had not caused it to rain upon the earth, and there was not a man to till the ground.\n"
    "But there went up a mist from the earth, and watered the whole face of the ground.\n"
    "And the LORD God formed man of the dust of the ground, and breathed into his nostrils the breath of life; and man became a living soul.\n"
    "And the LORD God planted a garden eastward in Eden; and there he put the man whom he had formed.\n"
    "And out of the ground made the LORD God to grow every tree that is pleasant to the sight, and good for food; the tree of life also in the midst of the garden, and the tree of knowledge of good and evil.\n"
    "And a river went out of Eden to water the garden; and from thence it was parted, and became into four heads.\n"
    "The name of the first is Pison: that is it which compasseth the whole land of Havilah, where there is gold;\n"
    "And the gold of that land is good: there is bdellium and the onyx stone.\n"
    "And the name of the second river is Gihon: the same is it that compasseth the whole land of Ethiopia.\n"
    "And the name of the third river is Hiddekel: that is it which goeth toward the east of Assyria. And the fourth river is Euphrates.\n"
    "And the LORD God took the man, and put him into the garden of Eden to dress it and to keep it.\n"
    "And the LORD God commanded the man, saying, Of every tree of the garden thou mayest freely eat:\n"
    "But of the tree of the knowledge of good and evil, thou shalt not eat of it: for in the day that thou eatest thereof thou shalt surely die.\n"
    "And the LORD God said, It is not good that the man should be alone; I will make him an help meet for him.\n"
    "And out of the ground the LORD God formed every beast of the field, and every fowl of the air; and brought them unto Adam to see what he would call them: and whatsoever Adam called every living creature, that was the name thereof.\n"
    "And Adam gave names to all cattle, and to the fowl of the air, and to every beast of the field; but for Adam there was not found an help meet for him.\n"
    "And the LORD God caused a deep sleep to fall upon Adam, and he slept: and he took one of his ribs, and closed up the flesh instead thereof;\n"
    "And the rib, which the LORD God had taken from man, made he a woman, and brought her unto the man.\n"
    "And Adam said, This is now bone of my bones, and flesh of my flesh: she shall be called Woman, because she was taken out of Man.\n"
    "Therefore shall a man leave his father and his mother, and shall cleave unto his wife: and they shall be one flesh.\n"
    "And they were both naked, the man and his wife, and were not ashamed.\n"
    ;

// Genesis 3: English the trainer never saw, for compression
static const char genesis_3[] =
    "Now the serpent was more subtil than any beast of the field which the LORD God had made. And he said unto the woman, Yea, hath God said, Ye shall not eat of every tree of the garden?\n"
    "And the woman said unto the serpent, We may eat of the fruit of the trees of the garden:\n"
    "But of the fruit of the tree which is in the midst of the garden, God hath said, Ye shall not eat of it, neither shall ye touch it, lest ye die.\n"
    "And the serpent said unto the woman, Ye shall not surely die:\n"
    "For God doth know that in the day ye eat thereof, then your eyes shall be opened, and ye shall be as gods, knowing good and evil.\n"
    "And when the woman saw that the tree was good for food, and that it was pleasant to the eyes, and a tree to be desired to make one wise, she took of the fruit thereof, and did eat, and gave also unto her husband with her; and he did eat.\n"
    "And the eyes of them both were opened, and they knew that they were naked; and they sewed fig leaves together, and made themselves aprons.\n"
    "And they heard the voice of the LORD God walking in the garden in the cool of the day: and Adam and his wife hid themselves from the presence of the LORD God amongst the trees of the garden.\n"
    "And the LORD God called unto Adam, and said unto him, Where art thou?\n"
    "And he said, I heard thy voice in the garden, and I was afraid, because I was naked; and I hid myself.\n"
    "And he said, Who told thee that thou wast naked? Hast thou eaten of the tree, whereof I commanded thee that thou shouldest not eat?\n"
    "And the man said, The woman whom thou gavest to be with me, she gave me of the tree, and I did eat.\n"
    "And the LORD God said unto the woman, What is this that thou hast done? And the woman said, The serpent beguiled me, and I did eat.\n"
    "And the LORD God said unto the serpent, Because thou hast done this, thou art cursed above all cattle, and above every beast of the field; upon thy belly shalt thou go, and dust shalt thou eat all the days of thy life:\n"
    "And I will put enmity between thee and the woman, and between thy seed and her seed; it shall bruise thy head, and thou shalt bruise his heel.\n"
    "Unto the woman he said, I will greatly multiply thy sorrow and thy conception; in sorrow thou shalt bring forth children; and thy desire shall be to thy husband, and he shall rule over thee.\n"
    "And unto Adam he said, Because thou hast hearkened unto the voice of thy wife, and hast eaten of the tree, of which I commanded thee, saying, Thou shalt not eat of it: cursed is the ground for thy sake; in sorrow shalt thou eat of it all the days of thy life;\n"
    "Thorns also and thistles shall it bring forth to thee; and thou shalt eat the herb of the field;\n"
    "In the sweat of thy face shalt thou eat bread, till thou return unto the ground; for out of it wast thou taken: for dust thou art, and unto dust shalt thou return.\n"
    "And Adam called his wife's name Eve; because she was the mother of all living.\n"
    "Unto Adam also and to his wife did the LORD God make coats of skins, and clothed them.\n"
    "And the LORD God said, Behold, the man is become as one of us, to know good and evil: and now, lest he put forth his hand, and take also of the tree of life, and eat, and live for ever:\n"
    "Therefore the LORD God sent him forth from the garden of Eden, to till the ground from whence he was taken.\n"
    "So he drove out the man; and he placed at the east of the garden of Eden Cherubims, and a flaming sword which turned every way, to keep the way of the tree of life.\n"
    ;

// Trains on text and parses the blob as runq does; dies if either fails.
static uint8_t *train_tokenizer(const char *text, size_t length, int vocab_size, Tokenizer *tokenizer, size_t *blob_size) {
    const char *error;
    uint8_t *blob = bpe_train(text, length, vocab_size, blob_size, &error);
    if (!blob) die("bpe_train refused a %d-piece vocabulary: %s", vocab_size, error);
    const char *parse_error = build_tokenizer_from_memory(tokenizer, blob, *blob_size, vocab_size);
    if (parse_error) die("build_tokenizer_from_memory on bpe_train's blob: %s", parse_error);
    tokenizer->bos_id = 1;
    tokenizer->eos_id = 2;
    return blob;
}

// decode(encode(text)), the pieces joined as runq prints them (BOS first, so
// the dummy prefix's space is dropped again).
static char *round_trip(const Tokenizer *t, const char *text, int *n_tokens) {
    int *ids = xcalloc(strlen(text) + 3, sizeof(int), "ids");
    int n = encode(t, text, 1, 0, ids);
    size_t capacity = 1;
    for (int i = 1; i < n; i++) capacity += strlen(t->vocab[ids[i]]);
    char *out = xcalloc(capacity, 1, "decoded");
    for (int i = 1; i < n; i++) strcat(out, decode(t, ids[i - 1], ids[i]));
    free(ids);
    *n_tokens = n - 1;
    return out;
}

static void test_layout(void) {
    Tokenizer t;
    size_t size;
    uint8_t *blob = train_tokenizer(genesis_1_2, strlen(genesis_1_2), 512, &t, &size);
    CHECK(t.vocab_size == 512, "vocabulary of 512 pieces, got %d", t.vocab_size);
    CHECK(strcmp(t.vocab[0], "<unk>") == 0 && strcmp(t.vocab[1], "<s>") == 0 && strcmp(t.vocab[2], "</s>") == 0,
          "ids 0, 1, 2 are <unk>, <s>, </s>; got %s %s %s", t.vocab[0], t.vocab[1], t.vocab[2]);
    int bytes_in_place = 1;
    for (int b = 0; b < 256; b++) bytes_in_place &= t.byte_tokens[b] == BPE_FIRST_BYTE + b;
    CHECK(bytes_in_place, "ids 3..258 are the byte pieces <0x00>..<0xFF>");
    CHECK(strcmp(t.vocab[BPE_FIRST_CHARACTER], " ") == 0 && strcmp(t.vocab[BPE_FIRST_CHARACTER + 1], "e") == 0,
          "the characters follow, most frequent first: ' ' then 'e', got '%s' '%s'",
          t.vocab[BPE_FIRST_CHARACTER], t.vocab[BPE_FIRST_CHARACTER + 1]);
    CHECK(str_lookup("\n", &t) >= BPE_FIRST_CHARACTER, "a newline, frequent, has its own piece");

    int longest = 0, space_inside = 0, newline_joined = 0, mixed = 0, digits_joined = 0;
    for (int id = BPE_FIRST_CHARACTER; id < t.vocab_size; id++) {
        const char *piece = t.vocab[id];
        int length = (int)strlen(piece), letters = 0, marks = 0;
        if (length > longest) longest = length;
        if (strchr(piece + 1, ' ')) space_inside++;
        if (strchr(piece, '\n') && length > 1) newline_joined++;
        for (const char *c = piece; *c; c++) {
            letters += isalpha((unsigned char)*c) != 0;
            marks += ispunct((unsigned char)*c) != 0;
        }
        mixed += letters > 0 && marks > 0;
        digits_joined += length > 1 && strpbrk(piece, "0123456789") != NULL;
    }
    CHECK(t.max_token_length == 6 || t.max_token_length == longest,
          "max_token_length is the longest piece (%d), got %d", longest, t.max_token_length);
    CHECK(space_inside == 0, "no piece holds a space past its first byte (%d do)", space_inside);
    CHECK(newline_joined == 0, "no piece joins a newline to anything (%d do)", newline_joined);
    CHECK(mixed == 0, "no piece mixes letters and punctuation (%d do)", mixed);
    CHECK(digits_joined == 0, "no piece joins a digit to anything (%d do)", digits_joined);

    int distinct = 1;   // a lookup finds the lowest id of equal pieces
    for (int id = 0; id < t.vocab_size; id++) distinct &= str_lookup(t.vocab[id], &t) == id;
    CHECK(distinct, "every piece is a different string");

    // special and byte pieces score 0, merge k scores -k, characters below every merge
    int first_merge = BPE_FIRST_CHARACTER;
    while (first_merge < t.vocab_size && t.scores[first_merge] != 0.0f) first_merge++;
    int scores_ok = 1;
    for (int id = 0; id < BPE_FIRST_CHARACTER; id++) scores_ok &= t.scores[id] == 0.0f;
    for (int id = first_merge; id < t.vocab_size; id++) scores_ok &= t.scores[id] == (float)-(id - first_merge);
    for (int id = BPE_FIRST_CHARACTER; id < first_merge; id++) scores_ok &= t.scores[id] < t.scores[t.vocab_size - 1];
    CHECK(scores_ok && first_merge > BPE_FIRST_CHARACTER + 20 && first_merge < 400,
          "scores: 0 for special and byte pieces, characters (ids %d..%d) below every merge, merge k scores -k",
          BPE_FIRST_CHARACTER, first_merge - 1);
    free_tokenizer(&t);
    free(blob);
}

// The segmentation the trainer ended with, word by word, is what runq's
// encoder produces for that word: the scores replay the merges.
static void test_encoder_replays_training(const char *name, const char *text, int vocab_size) {
    BpeTrainer trainer;
    memset(&trainer, 0, sizeof trainer);
    const char *error = bpe_learn(&trainer, text, strlen(text), vocab_size);
    CHECK(!error, "%s: training at %d pieces: %s", name, vocab_size, error ? error : "");
    if (error) { bpe_free(&trainer); return; }
    size_t size;
    uint8_t *blob = bpe_write_blob(&trainer, &size);
    Tokenizer t;
    CHECK(!build_tokenizer_from_memory(&t, blob, size, vocab_size), "%s: blob parses", name);
    t.bos_id = 1, t.eos_id = 2;

    int mismatched = 0, first_bad = -1;
    for (int w = 0; w < trainer.words.count; w++) {
        // "\n" first: encode's dummy-prefix space and the newline stay out of the word
        int length = trainer.words.lengths[w];
        char *line = xcalloc((size_t)length + 2, 1, "word");
        line[0] = '\n';
        memcpy(line + 1, trainer.words.strings[w], (size_t)length);
        int *ids = xcalloc((size_t)length + 5, sizeof(int), "ids");
        int n = encode(&t, line, 0, 0, ids);
        // the trainer's symbols, a byte-fallback character expanded to its bytes
        int *expected = xcalloc((size_t)length + 1, sizeof(int), "ids");
        int n_expected = 0, at = 0;
        const int *symbols = trainer.symbols + trainer.word_starts[w];
        for (int i = 0; i < trainer.word_lengths[w]; i++) {
            if (symbols[i] == BPE_BARRIER) {
                int unit = bpe_unit_length(line + 1, (size_t)length, (size_t)at);
                for (int b = 0; b < unit; b++) expected[n_expected++] = BPE_FIRST_BYTE + (unsigned char)line[1 + at + b];
                at += unit;
            } else {
                expected[n_expected++] = symbols[i];
                at += trainer.pieces.lengths[symbols[i]];
            }
        }
        int same = n - 2 == n_expected && memcmp(ids + 2, expected, sizeof(int) * (size_t)n_expected) == 0;
        if (!same && first_bad < 0) first_bad = w;
        mismatched += !same;
        free(line); free(ids); free(expected);
    }
    CHECK(mismatched == 0, "%s: encode segments %d of %d distinct words unlike the trainer (first: '%.*s')",
          name, mismatched, trainer.words.count, first_bad < 0 ? 0 : trainer.words.lengths[first_bad],
          first_bad < 0 ? "" : trainer.words.strings[first_bad]);
    free_tokenizer(&t);
    free(blob);
    bpe_free(&trainer);
}

static void test_round_trips(void) {
    Tokenizer t;
    size_t size;
    uint8_t *blob = train_tokenizer(genesis_1_2, strlen(genesis_1_2), 512, &t, &size);
    const char *texts[] = {
        "And God said, Let there be light: and there was light.",
        "In the beginning\nGod created the heaven\n\nand the earth.\n",
        "Café, naïve façade; Ærøskøbing — “quoted” text",
        "東京は日本の首都です。 Emoji: 😀🎉 and 한국어",
        "  two leading spaces, trailing spaces   ",
        "many     spaces\tand\ttabs\r\nand CRLF",
        " ",
        "\n",
        "x",
        "<s> </s> <unk> <0x41> are only text here",
        "numbers 1234567890 and 3.14159",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int n;
        char *back = round_trip(&t, texts[i], &n);
        CHECK(strcmp(back, texts[i]) == 0, "decode(encode(\"%s\")) gave \"%s\"", texts[i], back);
        free(back);
    }
    // never-seen characters go through byte fallback: one token per UTF-8 byte
    int n;
    char *back = round_trip(&t, "東", &n);
    CHECK(n == 1 + 3, "an unseen CJK character is its 3 bytes after the dummy space: %d tokens", n);
    free(back);
    free_tokenizer(&t);
    free(blob);
}

static void test_determinism(void) {
    size_t size_a, size_b, size_c;
    const char *error;
    uint8_t *a = bpe_train(genesis_1_2, strlen(genesis_1_2), 600, &size_a, &error);
    uint8_t *b = bpe_train(genesis_1_2, strlen(genesis_1_2), 600, &size_b, &error);
    CHECK(a && b && size_a == size_b && memcmp(a, b, size_a) == 0, "training twice gives identical bytes");
    // a larger vocabulary only adds merges: the same pieces come first
    Tokenizer small, large;
    uint8_t *c = train_tokenizer(genesis_1_2, strlen(genesis_1_2), 400, &small, &size_c);
    build_tokenizer_from_memory(&large, a, size_a, 600);
    int same = 1;
    for (int id = 0; id < 400; id++) same &= strcmp(small.vocab[id], large.vocab[id]) == 0;
    CHECK(same, "the 400-piece vocabulary is the start of the 600-piece one");
    free_tokenizer(&small);
    free_tokenizer(&large);
    free(a); free(b); free(c);
}

static double tokens_per_byte(const Tokenizer *t, const char *text) {
    int *ids = xcalloc(strlen(text) + 3, sizeof(int), "ids");
    int n = encode(t, text, 0, 0, ids);
    free(ids);
    return (double)n / (double)strlen(text);
}

static void test_compression(void) {
    Tokenizer t;
    size_t size;
    uint8_t *blob = train_tokenizer(genesis_1_2, strlen(genesis_1_2), 512, &t, &size);
    double seen = tokens_per_byte(&t, genesis_1_2), unseen = tokens_per_byte(&t, genesis_3);
    printf("tokens per byte at 512 pieces: %.3f on the training text, %.3f on held-out text\n", seen, unseen);
    // measured 0.342 and 0.436 (one token per character would be 1.0); 7 kB
    // of training text is little: on kjv.txt, 512 pieces give 0.45 and 4096 0.25
    CHECK(seen < 0.38, "the training text compresses to under 0.38 tokens per byte, got %.3f", seen);
    CHECK(unseen < 0.48, "held-out English compresses to under 0.48 tokens per byte, got %.3f", unseen);
    free_tokenizer(&t);
    free(blob);
}

// Documents (tools/train.c cuts the corpus at blank lines) are encoded one by
// one, so a document's first word comes after encode's dummy-prefix space; the
// first word of any other line has none.
static void test_document_starts(void) {
    const char *text = "Zebras run.\nQuaggas walk.\n\nZebras swim.\nQuaggas fly.\n\n\nZebras sing.\nQuaggas hum.\n";
    Tokenizer t;
    size_t size;
    uint8_t *blob = train_tokenizer(text, strlen(text), 300, &t, &size);
    CHECK(str_lookup(" Zebras", &t) >= 0 && str_lookup("Zebras", &t) < 0,
          "a document's first word is learned with its dummy-prefix space");
    CHECK(str_lookup("Quaggas", &t) >= 0 && str_lookup(" Quaggas", &t) < 0,
          "the first word of another line is learned without a space");
    free_tokenizer(&t);
    free(blob);
}

// Characters too rare for 99.95% coverage get no piece and go through bytes.
static void test_character_coverage(void) {
    size_t length = strlen(genesis_1_2);
    char *text = xcalloc(length + 8, 1, "text");
    memcpy(text, genesis_1_2, length);
    memcpy(text + length, "\xc3\xa9\n", 3);   // one é in 7 kB
    Tokenizer t;
    size_t size;
    uint8_t *blob = train_tokenizer(text, length + 3, 400, &t, &size);
    CHECK(str_lookup("\xc3\xa9", &t) < 0, "a character seen once in 7 kB has no piece");
    CHECK(str_lookup("L", &t) >= 0, "a capital seen a few dozen times has one");
    int n;
    char *back = round_trip(&t, "caf\xc3\xa9", &n);
    CHECK(strcmp(back, "caf\xc3\xa9") == 0, "the rare character round-trips through byte fallback");
    free(back);
    free_tokenizer(&t);
    free(blob);
    free(text);
}

// Long runs without spaces: pieces stop at 16 characters (SentencePiece's
// limit). Words of 64 x's merge into 2, 4, 8, then 16 x's, and no further.
static void test_long_words(void) {
    size_t genesis_length = strlen(genesis_1_2), length = genesis_length + 65 * 300;
    char *text = xcalloc(length + 1, 1, "text");
    memcpy(text, genesis_1_2, genesis_length);
    for (size_t i = genesis_length; i < length; i++) text[i] = (i - genesis_length) % 65 == 64 ? ' ' : 'x';
    Tokenizer t;
    size_t size;
    uint8_t *blob = train_tokenizer(text, length, 512, &t, &size);
    char run[40] = {0};
    memset(run, 'x', 16);
    CHECK(str_lookup(run, &t) >= 0, "16 x's are a piece");
    int longest = 0;
    for (int id = BPE_FIRST_CHARACTER; id < t.vocab_size; id++)
        if ((int)strlen(t.vocab[id]) > longest) longest = (int)strlen(t.vocab[id]);
    CHECK(longest == BPE_MAX_PIECE_CHARACTERS, "the longest piece has %d characters, got %d", BPE_MAX_PIECE_CHARACTERS, longest);
    free_tokenizer(&t);
    free(blob);
    free(text);
}

// Bytes that are not UTF-8 are characters of no piece: training and round trips work.
static void test_invalid_utf8(void) {
    size_t length = 20000;
    char *text = xcalloc(length + 1, 1, "text");
    uint32_t state = 12345;
    for (size_t i = 0; i < length; i++) {
        state = state * 1664525u + 1013904223u;
        text[i] = i % 3 ? (char)(1 + (state >> 24) % 255) : "the "[i % 4];
    }
    Tokenizer t;
    size_t size;
    const char *error;
    uint8_t *blob = bpe_train(text, length, 1000, &size, &error);
    CHECK(blob != NULL, "random bytes train a 1000-piece vocabulary: %s", blob ? "" : error);
    if (blob && !build_tokenizer_from_memory(&t, blob, size, 1000)) {
        t.bos_id = 1, t.eos_id = 2;
        text[200] = '\0';
        int n;
        char *back = round_trip(&t, text, &n);
        CHECK(strcmp(back, text) == 0, "random bytes round-trip");
        free(back);
        free_tokenizer(&t);
    }
    free(blob);
    free(text);
}

static void expect_refusal(const char *what, const char *text, size_t length, int vocab_size, const char *expected) {
    size_t size = 1;
    const char *error = NULL;
    uint8_t *blob = bpe_train(text, length, vocab_size, &size, &error);
    CHECK(!blob && size == 0 && error && strstr(error, expected), "%s: expected an error saying \"%s\", got \"%s\"",
          what, expected, error ? error : "(none)");
    free(blob);
}

static void test_refusals(void) {
    expect_refusal("empty text", "", 0, 512, "empty");
    expect_refusal("no text", NULL, 0, 512, "empty");
    expect_refusal("only NUL bytes", "\0\0\0", 3, 512, "NUL");
    expect_refusal("vocab_size 65536", genesis_1_2, strlen(genesis_1_2), 65536, "above 65535");
    expect_refusal("vocab_size 259", genesis_1_2, strlen(genesis_1_2), 259, "too small");
    expect_refusal("vocab_size 0", genesis_1_2, strlen(genesis_1_2), 0, "too small");
    expect_refusal("vocab_size -5", genesis_1_2, strlen(genesis_1_2), -5, "too small");
    expect_refusal("more pieces than the text can give", "ab ab ab", 8, 600, "too large");
    // exactly the reserved pieces and the characters: no merge needed
    size_t size;
    const char *error;
    uint8_t *blob = bpe_train("ab ab", 5, 259 + 3, &size, &error);
    CHECK(blob != NULL, "259 + 3 pieces for a text of 3 characters: %s", blob ? "" : error);
    free(blob);
}

int main(void) {
    test_layout();
    test_encoder_replays_training("Genesis 1-2 at 512", genesis_1_2, 512);
    test_encoder_replays_training("Genesis 1-2 at 700", genesis_1_2, 700);
    test_round_trips();
    test_determinism();
    test_compression();
    test_document_starts();
    test_character_coverage();
    test_long_words();
    test_invalid_utf8();
    test_refusals();
    return check_summary("test_bpe");
}

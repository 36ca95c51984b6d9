/*
convert/open_source.h — any model file or directory export reads, told apart
by what it is: a directory is a Hugging Face model, a file by its magic.

What it is not: the readers themselves; it only picks one.

Include after: every reader: convert/sources.h, convert/hf.h, convert/gguf_read.h.
*/

#ifndef EDGE_CONVERT_OPEN_SOURCE_H
#define EDGE_CONVERT_OPEN_SOURCE_H
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"   // a program uses the parts it needs

static uint32_t file_magic(const char *path) {
    uint32_t magic = 0;
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s: %s", path, strerror(errno));
    if (fread(&magic, 1, 4, f) != 4) magic = 0;
    fclose(f);
    return magic;
}

// Any model file or directory export reads, told apart by what it is.
static void open_source(Source *src, const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) die("cannot open %s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) { open_hf(src, path); return; }
    uint32_t magic = file_magic(path);
    if (magic == CHECKPOINT_MAGIC) open_checkpoint_source(src, path);
    else if (magic == GGUF_MAGIC_U32) open_gguf(src, path);
    else open_legacy(src, path);
}

#pragma GCC diagnostic pop
#endif

// oracle.h — the fp32 reference runtime (run.c), as tests and tools/ppl see it.
// Not runq: the two keep their names static and meet only through this.
#include <stddef.h>
typedef struct Oracle Oracle;
Oracle *oracle_open(const char *path);                          // dies on a bad checkpoint
const float *oracle_forward(Oracle *o, int token, int pos);     // logits (vocab_size,)
int oracle_vocab_size(const Oracle *o);
int oracle_seq_len(const Oracle *o);                            // positions its KV cache holds
int oracle_bos_id(const Oracle *o);
// the tokenizer embedded in an Edge LLM checkpoint (llama2.c's tokenizer.bin
// layout), or NULL for a llama2.c .bin, which has none
const unsigned char *oracle_tokenizer_blob(const Oracle *o, size_t *size);
void oracle_close(Oracle *o);

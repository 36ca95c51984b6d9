// oracle.h — the fp32 reference runtime (run.c), as tests and tools/ppl see it.
// Not runq: the two keep their names static and meet only through this.
#include <stddef.h>
typedef struct Oracle Oracle;
Oracle *oracle_open(const char *path);                          // dies on a bad checkpoint
// the state of a run of positions positions (0: the whole context; LongRoPE
// chooses its factors by it, as runq's prepare_run does); before oracle_forward
void oracle_prepare(Oracle *o, int positions);
const float *oracle_forward(Oracle *o, int token, int pos);     // logits (vocab_size,), pos < positions
int oracle_vocab_size(const Oracle *o);
int oracle_seq_len(const Oracle *o);                            // positions its KV cache holds
int oracle_bos_id(const Oracle *o);
// the tokenizer embedded in an Edge LLM checkpoint (llama2.c's tokenizer.bin
// layout), or NULL for a llama2.c .bin, which has none
const unsigned char *oracle_tokenizer_blob(const Oracle *o, size_t *size);
void oracle_close(Oracle *o);

// oracle.h — the fp32 reference runtime (run.c), as tests see it.
typedef struct Oracle Oracle;
Oracle *oracle_open(const char *path);                          // dies on a bad checkpoint
const float *oracle_forward(Oracle *o, int token, int pos);     // logits (vocab_size,)
int oracle_vocab_size(const Oracle *o);
void oracle_close(Oracle *o);

# The course's chapters, declared once each (see cmake/TinyllmChapter.cmake). Order matters: a chapter may only
# depend on chapters declared above it. DEPENDS lists exactly the chapters whose headers this chapter's headers
# #include (<tinyllm/<DIR>/...>, in both trees); what those include comes through linking. The course tools read
# this file through tools/course/chapters.py; `python3 tools/course/chapters.py --check` (CI) checks DEPENDS.
tinyllm_chapter(ch1.1 WEEK week1 DIR ch1_1_attention TITLE "Attention and multi-head attention")
tinyllm_chapter(ch1.2 WEEK week1 DIR ch1_2_rope TITLE "Rotary positional encoding")
tinyllm_chapter(ch1.3 WEEK week1 DIR ch1_3_gqa TITLE "Grouped-query attention" DEPENDS ch1.1 ch1.2)
tinyllm_chapter(ch1.4 WEEK week1 DIR ch1_4_rmsnorm_mlp TITLE "RMSNorm and the SwiGLU MLP" DEPENDS ch1.1)
tinyllm_chapter(ch1.5 WEEK week1 DIR ch1_5_qwen2_model TITLE "The Qwen2 model" DEPENDS ch1.1 ch1.3 ch1.4)
tinyllm_chapter(ch1.6 WEEK week1 DIR ch1_6_generate TITLE "Generating text" DEPENDS ch1.5)
tinyllm_chapter(ch1.7 WEEK week1 DIR ch1_7_sampling TITLE "Sampling")
tinyllm_chapter(ch2.1 WEEK week2 DIR ch2_1_kv_cache TITLE "KV cache" DEPENDS ch1.1 ch1.2 ch1.3 ch1.4 ch1.5 ch1.6)
tinyllm_chapter(ch2.2 WEEK week2 DIR ch2_2_quantized_matmul TITLE "Quantized matmul, scalar")
tinyllm_chapter(ch2.3 WEEK week2 DIR ch2_3_fast_qmatmul TITLE "Quantized matmul, fast" DEPENDS ch2.2)
tinyllm_chapter(ch2.4 WEEK week2 DIR ch2_4_flash_attention TITLE "Flash attention" DEPENDS ch1.3)
tinyllm_chapter(ch2.5 WEEK week2 DIR ch2_5_parallel_flash_attention TITLE "Flash attention, parallel" DEPENDS ch2.4)
tinyllm_chapter(ch2.6 WEEK week2 DIR ch2_6_continuous_batching TITLE "Continuous batching" DEPENDS ch1.1 ch1.3 ch1.4 ch1.6 ch2.1)
tinyllm_chapter(ch2.7 WEEK week2 DIR ch2_7_chunked_prefill TITLE "Chunked prefill" DEPENDS ch2.1 ch2.6)
tinyllm_chapter(ch3.1 WEEK week3 DIR ch3_1_paged_kv_cache TITLE "Paged KV cache" DEPENDS ch1.3 ch2.1 ch2.6)
tinyllm_chapter(ch3.2 WEEK week3 DIR ch3_2_paged_attention TITLE "Paged attention" DEPENDS ch2.4 ch2.5 ch2.6 ch3.1)

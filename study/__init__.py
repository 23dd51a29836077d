"""Study material from indexed documents: AI notes with page citations, quizzes, flashcards, and
the quality scores stored with each. Pure logic: the DAG tasks read the lake and write gold
tables; the generator (offline or an OpenAI-compatible LLM) is passed in."""

"""Interface text in English and Japanese; the browser's language picks (Gradio's settings can switch it)."""

import gradio as gr

TEXT = {
    "title": ("Alignment Playground", "アラインメント・プレイグラウンド"),
    "tab_compare": ("Compare", "比較"),
    "tab_arena": ("Arena (blind)", "アリーナ（ブラインド）"),
    "tab_leaderboard": ("Leaderboard", "リーダーボード"),
    "tab_data": ("Data", "データ"),
    "tab_train": ("Train", "学習"),
    "name": ("Your name (optional)", "お名前（任意）"),
    "prompt": ("Prompt", "プロンプト"),
    "columns": ("Columns (choose 1 to 4)", "表示する列（1〜4個）"),
    "send": ("Send", "送信"),
    "stop": ("Stop", "停止"),
    "clear": ("Clear", "クリア"),
    "regenerate": ("Regenerate", "再生成"),
    "mode": ("Prompting mode", "プロンプトの方式"),
    "task": ("Task bank", "タスク"),
    "k": ("k (few-shot examples)", "k（例の数）"),
    "lang": ("Examples in", "例の言語"),
    "settings": ("Generation settings", "生成の設定"),
    "best_of_n": ("best-of-n by reward model (1 = off)", "報酬モデルによる best-of-n（1 = なし）"),
    "max_new_tokens": ("max new tokens", "最大トークン数"),
    "temperature": ("temperature (0 = greedy)", "temperature（0 = 貪欲法）"),
    "show_prompt": ("show prompt", "プロンプトを表示"),
    "ideal": ("Ideal answer", "理想の回答"),
    "ideal_for": ("for the latest answer of", "対象の列"),
    "save_correction": ("Save ideal answer", "理想の回答を保存"),
    "arena_intro": (
        "Two anonymous models answer the same prompt, in random order. Vote, then see who they were. "
        "Only these blind votes count in the ratings.",
        "匿名の2つのモデルが同じプロンプトに答えます（順番はランダム）。投票すると名前が明かされます。"
        "評価に使われるのはこのブラインド投票だけです。",
    ),
    "arena_send": ("Ask both", "両方に質問"),
    "a_better": ("A is better", "Aが良い"),
    "b_better": ("B is better", "Bが良い"),
    "tie": ("Tie", "引き分け"),
    "both_bad": ("Both bad", "どちらも悪い"),
    "refresh": ("Refresh", "更新"),
    "ratings": ("Ratings (Bradley-Terry, 95% interval)", "レーティング（Bradley-Terry、95%区間）"),
    "win_rates": ("Win rate of row against column", "行の列に対する勝率"),
    "thumbs": ("Thumbs-up rate", "高評価率"),
    "recent": ("Recent answers and feedback", "最近の回答とフィードバック"),
    "usable": ("Usable training data", "学習に使えるデータ"),
    "download": ("Download", "ダウンロード"),
}

I18N = gr.I18n(en={k: v[0] for k, v in TEXT.items()}, ja={k: v[1] for k, v in TEXT.items()})


def t(key: str):
    """A label the browser shows in its language."""
    return I18N(key)

"""Fake of minigpt4.conversation.conversation: the conversation template and ``Chat`` with the
real methods' behaviour (the system text differs; tests read it from here)."""

import dataclasses
from enum import Enum, auto

import torch
from PIL import Image
from transformers import StoppingCriteria, StoppingCriteriaList


class SeparatorStyle(Enum):
    SINGLE = auto()
    TWO = auto()


@dataclasses.dataclass
class Conversation:
    system: str
    roles: tuple
    messages: list
    offset: int
    sep_style: SeparatorStyle = SeparatorStyle.SINGLE
    sep: str = "###"
    sep2: str = None

    def get_prompt(self):
        out = self.system + self.sep
        for role, message in self.messages:
            out += role + message + self.sep if message else role
        return out

    def append_message(self, role, message):
        self.messages.append([role, message])

    def copy(self):
        return dataclasses.replace(self, messages=[list(m) for m in self.messages])


class StoppingCriteriaSub(StoppingCriteria):
    def __init__(self, stops=(), encounters=1):
        super().__init__()
        self.stops = stops

    def __call__(self, input_ids, scores, **kwargs):
        return any(bool(torch.all(input_ids[:, -len(stop) :] == stop)) for stop in self.stops)


CONV_VISION_Vicuna0 = Conversation(
    system="Fake MiniGPT-4 system text with <Img>ImageContent</Img>.", roles=("Human: ", "Assistant: "), messages=[], offset=2, sep="###"
)
CONV_VISION_LLama2 = Conversation(
    system="Fake MiniGPT-4 system text with <Img>ImageContent</Img>.", roles=("<s>[INST] ", " [/INST] "), messages=[], offset=2, sep=""
)


class Chat:
    def __init__(self, model, vis_processor, device="cuda:0", stopping_criteria=None):
        self.device, self.model, self.vis_processor = device, model, vis_processor
        self.stopping_criteria = stopping_criteria or StoppingCriteriaList([StoppingCriteriaSub(stops=[torch.tensor([2])])])

    def ask(self, text, conv):
        last = conv.messages[-1] if conv.messages else None
        if last is not None and last[0] == conv.roles[0] and last[1][-6:] == "</Img>":  # join the text to its image
            last[1] = " ".join([last[1], text])
        else:
            conv.append_message(conv.roles[0], text)

    def answer_prepare(
        self,
        conv,
        img_list,
        max_new_tokens=300,
        num_beams=1,
        min_length=1,
        top_p=0.9,
        repetition_penalty=1.05,
        length_penalty=1,
        temperature=1.0,
        max_length=2000,
    ):
        conv.append_message(conv.roles[1], None)
        embs = self.model.get_context_emb(conv.get_prompt(), img_list)
        begin = max(0, embs.shape[1] + max_new_tokens - max_length)
        return dict(
            inputs_embeds=embs[:, begin:],
            max_new_tokens=max_new_tokens,
            stopping_criteria=self.stopping_criteria,
            num_beams=num_beams,
            do_sample=True,
            min_length=min_length,
            top_p=top_p,
            repetition_penalty=repetition_penalty,
            length_penalty=length_penalty,
            temperature=float(temperature),
        )

    def answer(self, conv, img_list, **kwargs):
        tokens = self.model_generate(**self.answer_prepare(conv, img_list, **kwargs))[0]
        text = self.model.llama_tokenizer.decode(tokens, skip_special_tokens=True).split("###")[0].split("Assistant:")[-1].strip()
        conv.messages[-1][1] = text
        return text, tokens.cpu().numpy()

    def model_generate(self, *args, **kwargs):
        with self.model.maybe_autocast():
            return self.model.llama_model.generate(*args, **kwargs)

    def encode_img(self, img_list):
        image = img_list.pop(0)
        if isinstance(image, str):
            image = Image.open(image).convert("RGB")
        if isinstance(image, Image.Image):
            image = self.vis_processor(image).unsqueeze(0).to(self.device)
        emb, _ = self.model.encode_img(image)
        img_list.append(emb)

    def upload_img(self, image, conv, img_list):
        conv.append_message(conv.roles[0], "<Img><ImageHere></Img>")
        img_list.append(image)
        return "Received."

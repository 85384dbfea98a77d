"""French names for synthetic schools: accents, hyphens, particles, as real directories carry them."""

# fmt: off
LAST_NAMES = (
    "MARTIN", "BERNARD", "THOMAS", "PETIT", "ROBERT", "RICHARD", "DURAND", "DUBOIS", "MOREAU", "LAURENT",
    "SIMON", "MICHEL", "LEFÈVRE", "LEROY", "ROUX", "DAVID", "BERTRAND", "MOREL", "FOURNIER", "GIRARD",
    "BONNET", "DUPONT", "LAMBERT", "FONTAINE", "ROUSSEAU", "VINCENT", "MULLER", "LEFEBVRE", "FAURE", "ANDRÉ",
    "MERCIER", "BLANC", "GUÉRIN", "BOYER", "GARNIER", "CHEVALIER", "FRANÇOIS", "LEGRAND", "GAUTHIER", "GARCIA",
    "PERRIN", "ROBIN", "CLÉMENT", "MORIN", "NICOLAS", "HENRY", "ROUSSEL", "MATHIEU", "GAUTIER", "MASSON",
    "MARCHAND", "DUVAL", "DENIS", "DUMONT", "MARIE", "LEMAIRE", "NOËL", "MEYER", "DUFOUR", "MEUNIER",
    "BRUN", "BLANCHARD", "GIRAUD", "JOLY", "RIVIÈRE", "LUCAS", "BRUNET", "GAILLARD", "BARBIER", "ARNAUD",
    "MARTINEZ", "GÉRARD", "ROCHE", "RENARD", "SCHMITT", "ROY", "LEROUX", "COLIN", "VIDAL", "CARON",
    "PICARD", "ROGER", "FABRE", "AUBERT", "LEMOINE", "RENAUD", "DUMAS", "LACROIX", "OLIVIER", "PHILIPPE",
    "BOURGEOIS", "PIERRE", "BENOÎT", "REY", "LECLERC", "PAYET", "ROLLAND", "LECLERCQ", "GUILLAUME", "LECOMTE",
    "LÓPEZ", "JEAN", "DUPUY", "GUILLOT", "HUBERT", "BERGER", "CARPENTIER", "SÁNCHEZ", "DUPUIS", "MOULIN",
    "LOUIS", "DESCHAMPS", "HUET", "VASSEUR", "PEREZ", "BOUCHER", "FLEURY", "ROYER", "KLEIN", "JACQUET",
    "LE GALL", "LE ROUX", "DE LA FONTAINE", "D'ALMEIDA", "N'DIAYE", "BEN SAÏD", "DUPONT-MOREAU", "MARTIN-LÉGER",
    "LE BRIS", "BÉNARD", "HÉBERT", "CÔTÉ", "PÉRÈS", "NGUYEN", "TRAN", "DIALLO", "KOUASSI", "OUÉDRAOGO",
)

FIRST_NAMES_F = (
    "Emma", "Léa", "Chloé", "Manon", "Inès", "Jade", "Louise", "Camille", "Zoé", "Lina", "Anaïs", "Hélène",
    "Noémie", "Éloïse", "Maëlle", "Céline", "Agnès", "Joséphine", "Marie-Claire", "Anne-Sophie", "Clémence",
    "Mathilde", "Océane", "Laure", "Mélanie", "Aurélie", "Sarah", "Yasmine", "Fatoumata", "Awa", "Élise",
    "Margaux", "Juliette", "Léonie", "Rose", "Ambre", "Lucie", "Pauline", "Solène", "Héloïse", "Maïwenn",
)
FIRST_NAMES_M = (
    "Lucas", "Hugo", "Louis", "Gabriel", "Léo", "Raphaël", "Arthur", "Jules", "Adam", "Maël", "Noé", "Théo",
    "Jean-Baptiste", "Jean-Michel", "Pierre-Louis", "François", "Jérôme", "Benoît", "Anaël", "Mathéo", "Nathan",
    "Enzo", "Ethan", "Timéo", "Sacha", "Mohamed", "Youssef", "Amadou", "Kévin", "Grégoire", "Loïc", "Gaël",
    "Baptiste", "Clément", "Thibault", "Antoine", "Victor", "Aurélien", "Rémi", "Cédric", "Stéphane",
)
# fmt: on
